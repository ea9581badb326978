"""Model variants. ``create_model(name)`` is the one way in; ``edgevid variants`` lists them."""

from edgevid.train.models.registry import (
    DEFAULT_LABELS,
    VariantSpec,
    create_model,
    list_models,
    model_spec,
    register_model,
)

__all__ = [
    "DEFAULT_LABELS",
    "VariantSpec",
    "create_model",
    "list_models",
    "model_spec",
    "register_model",
]
