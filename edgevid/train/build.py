"""The model a training run starts from: a registry variant, its weights, its new head."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from edgevid.errors import ModelError
from edgevid.train.models import create_model, model_spec
from edgevid.train.models.timesformer import DEFAULT_WEIGHTS, keep_layers, load_pretrained
from edgevid.train.zeroshot import zero_shot_head

RANDOM = "random"  # --weights random: no pretrained weights


def default_weights(variant: str) -> str | None:
    """Full-size TimeSformer variants start from Kinetics-400; tiny-* and scratch from random."""
    spec = model_spec(variant)
    if spec.family == "timesformer" and not variant.startswith("tiny-"):
        return DEFAULT_WEIGHTS
    return None


def resolve_weights(variant: str, weights: str | None) -> str | None:
    if weights == RANDOM:
        return None
    return weights or default_weights(variant)


def build_model(
    variant: str, labels: Sequence[str], weights: str | None = None, zero_shot: bool = False
) -> nn.Module:
    """Variant ``variant`` over ``labels``; ``weights`` as in :func:`resolve_weights`."""
    weights = resolve_weights(variant, weights)
    if not zero_shot:
        return create_model(variant, labels=labels, weights=weights)
    spec = model_spec(variant)
    if spec.family != "timesformer" or weights is None:
        raise ModelError("--zero-shot needs a TimeSformer variant with Kinetics-400 weights")
    model = load_pretrained(weights)
    zero_shot_head(model, labels)
    if spec.num_layers < model.config.num_hidden_layers:
        keep_layers(model, range(spec.num_layers))
    model.config.edgevid_variant = variant
    return model
