"""The model registry: every variant is a name, ``create_model(name)`` builds it.

    create_model("prune4", labels=classes, pretrained=True)   # Kinetics weights, 8 layers
    create_model("tiny-timesformer", labels=classes)          # random init, for tests

Every model it returns is a Hugging Face ``PreTrainedModel`` that takes
``pixel_values`` (B, T, 3, H, W) and returns ``.logits`` (B, num_classes), so training,
export and evaluation never branch on the family.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgevid.errors import ModelError

DEFAULT_LABELS = ("LongJump", "JavelinThrow", "Skiing", "PoleVault", "HorseRiding")


@dataclass(frozen=True)
class VariantSpec:
    name: str  # registry key, e.g. "prune4"
    family: str  # "timesformer" | "scratch": decides the checkpoint class
    num_layers: int  # encoder layers in this variant
    description: str  # one line for `edgevid variants`
    builder: Callable[..., Any]  # (labels, pretrained, weights, num_layers, **kw) -> model
    defaults: dict[str, Any] = field(default_factory=dict)  # builder kwargs of this variant


_REGISTRY: dict[str, VariantSpec] = {}


def register_model(
    name: str, *, family: str, num_layers: int, description: str, **defaults: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``builder`` under ``name`` (with fixed builder kwargs)."""

    def deco(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = VariantSpec(name, family, num_layers, description, builder, defaults)
        return builder

    return deco


def list_models(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]  # registration order


def model_spec(name: str) -> VariantSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown variant {name!r}; choose from: {', '.join(list_models())}"
        ) from None


def create_model(
    name: str,
    *,
    labels: Sequence[str] = DEFAULT_LABELS,
    pretrained: bool = False,
    weights: str | None = None,
    **overrides: Any,
):
    """Build variant ``name`` with a classification head over ``labels``.

    ``pretrained`` loads the family's default weights (a hub id) unless ``weights`` names
    a hub id or a local folder; weights always imply pretrained. ``overrides`` go to the
    variant's config (e.g. ``num_frames=16``).
    """
    spec = model_spec(name)
    if not labels:
        raise ModelError("a model needs at least one label")
    kwargs = {**spec.defaults, **overrides}
    model = spec.builder(
        labels=list(labels),
        pretrained=pretrained or weights is not None,
        weights=weights,
        num_layers=spec.num_layers,
        **kwargs,
    )
    model.config.edgevid_variant = name
    return model


def _ensure_loaded() -> None:
    """Import the modules whose decorators fill the registry, in listing order."""
    for module in _FAMILY_MODULES:
        importlib.import_module(module)


_FAMILY_MODULES = ("edgevid.train.models.timesformer", "edgevid.train.models.scratch")
