"""TimeSformer variants: the Kinetics-400 model and its layer-pruned children.

Hugging Face ``TimesformerForVideoClassification`` (divided space-time attention, 12
encoder layers, 8 frames of 224x224 at base size). ``pruneK`` drops layers so that
``12 - K`` remain; built from weights, the pruned model keeps the first layers (the
``last`` strategy: drop the final ones); ``edgevid prune`` also offers importance pruning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch.nn as nn
from transformers import TimesformerConfig, TimesformerForVideoClassification

from edgevid.errors import ModelError
from edgevid.train.models.registry import register_model

DEFAULT_WEIGHTS = "facebook/timesformer-base-finetuned-k400"
WEIGHTS_LICENSE = "CC-BY-NC-4.0"

BASE = dict(  # the Kinetics-400 TimeSformer-base (HF defaults, spelled out)
    image_size=224,
    patch_size=16,
    num_frames=8,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    attention_type="divided_space_time",
)
# same architecture, small enough to train in minutes on a laptop CPU
TINY = BASE | dict(image_size=32, patch_size=8, hidden_size=48, num_attention_heads=4,
                   intermediate_size=96)  # fmt: skip


def encoder_layers(model: TimesformerForVideoClassification) -> nn.ModuleList:
    return model.timesformer.encoder.layer


def keep_layers(model: TimesformerForVideoClassification, keep: Sequence[int]) -> None:
    """Prune in place to the encoder layers ``keep`` (indices into the current layers)."""
    layers = encoder_layers(model)
    keep = list(keep)
    if not keep or sorted(set(keep)) != sorted(keep) or not all(0 <= i < len(layers) for i in keep):
        raise ModelError(f"cannot keep layers {keep} of a {len(layers)}-layer model")
    prior = getattr(model.config, "edgevid_kept_layers", None) or list(range(len(layers)))
    model.timesformer.encoder.layer = nn.ModuleList(layers[i] for i in sorted(keep))
    model.config.num_hidden_layers = len(keep)
    model.config.edgevid_kept_layers = [prior[i] for i in sorted(keep)]  # in original numbering


def init_time_embeddings(model: TimesformerForVideoClassification) -> None:
    """Draw the time embeddings like the position embeddings (truncated normal).

    Hugging Face leaves them at zero. Zero time embeddings make divided space-time attention
    blind to frame order (temporal attention is permutation-equivariant, the CLS token
    averages over frames), and training escapes that symmetry slowly (how much a trained
    model relies on frame order: benchmarks/results/bench_train_control.json).
    """
    time = model.timesformer.embeddings.time_embeddings
    nn.init.trunc_normal_(time.data, std=model.config.initializer_range)


def set_labels(model: TimesformerForVideoClassification, labels: Sequence[str]) -> None:
    """Replace the classifier head with a fresh one over ``labels`` (if it differs)."""
    cfg = model.config
    if [cfg.id2label.get(i) for i in range(cfg.num_labels)] == list(labels):
        return
    head = model.classifier
    new = nn.Linear(head.in_features, len(labels))
    nn.init.trunc_normal_(new.weight, std=cfg.initializer_range)
    nn.init.zeros_(new.bias)
    model.classifier = new.to(head.weight.device, head.weight.dtype)
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {name: i for i, name in enumerate(labels)}


def offline_unless_hub_reachable(timeout_s: float = 2.0) -> bool:
    """Before a hub download: unless HF_HUB_OFFLINE already says so, one short TCP probe of
    the hub; where it fails, offline mode (the local cache only) for the rest of the process.

    A machine without a network then fails in seconds with the clear error, instead of
    minutes of the hub client's retries. Returns whether the hub is treated as offline."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
        return False
    except OSError:
        constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub and transformers
        os.environ["HF_HUB_OFFLINE"] = "1"  # and by any child process
        return True


def load_pretrained(weights: str) -> TimesformerForVideoClassification:
    """A hub id or a local folder -> model; offline failures become one clear ModelError."""
    local = os.path.isdir(weights)
    if not local and weights.startswith((".", "/", "~")):
        raise ModelError(f"{weights}: weights folder not found")
    if not local:
        offline_unless_hub_reachable()
    try:
        return TimesformerForVideoClassification.from_pretrained(weights)
    except (OSError, ValueError) as e:
        hint = (
            f"download it once where there is a network (huggingface-cli download "
            f"{DEFAULT_WEIGHTS} --local-dir DIR) and pass the folder: weights=DIR in Python, "
            "--weights DIR on the command line"
        )
        where = "local folder" if local else "hub id"
        cause = type(e).__name__  # one line: the hub client's own chain is pages long
        raise ModelError(
            f"cannot load TimeSformer weights from {where} {weights!r} ({cause}): {hint}"
        ) from None


def build_timesformer(
    *,
    labels: list[str],
    pretrained: bool,
    weights: str | None,
    num_layers: int,
    size: str = "base",
    **overrides: Any,
) -> TimesformerForVideoClassification:
    if pretrained:
        model = load_pretrained(weights or DEFAULT_WEIGHTS)
        if overrides:
            raise ModelError(f"cannot change {sorted(overrides)} of pretrained weights")
        set_labels(model, labels)
    else:
        cfg = {**(BASE if size == "base" else TINY), **overrides, "num_hidden_layers": 12}
        model = TimesformerForVideoClassification(
            TimesformerConfig(
                **cfg,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={n: i for i, n in enumerate(labels)},
            )
        )
        init_time_embeddings(model)
    if num_layers < len(encoder_layers(model)):
        keep_layers(model, range(num_layers))
    return model


for _size, _prefix in (("base", ""), ("tiny", "tiny-")):
    _what = "Kinetics-400 TimeSformer-base" if _size == "base" else "tiny TimeSformer (tests)"
    for _drop in (0, 2, 4, 6, 8):
        register_model(
            f"{_prefix}prune{_drop}" if _drop else f"{_prefix}timesformer",
            family="timesformer",
            num_layers=12 - _drop,
            description=f"{_what}, {12 - _drop} encoder layers",
            size=_size,
        )(build_timesformer)
