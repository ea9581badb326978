"""Zero-shot head: start the new classifier from the matching Kinetics-400 classes.

The Kinetics-400 TimeSformer already knows the five reference sports under other names.
Copying those rows of its 400-way classifier into the new 5-way head gives a model that is
right before the first training step, and a better start for fine-tuning. Classes without
a Kinetics counterpart get a fresh row. Names are looked up in the checkpoint's own
``id2label``, never by index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from edgevid.errors import ModelError

# UCF101 class -> Kinetics-400 label (exact strings of the K400 label list).
UCF_TO_KINETICS: dict[str, str] = {
    "LongJump": "long jump",
    "JavelinThrow": "javelin throw",
    "Skiing": "skiing (not slalom or crosscountry)",
    "PoleVault": "pole vault",
    "HorseRiding": "riding or walking with horse",
}


@torch.no_grad()
def zero_shot_head(
    model: nn.Module, labels: Sequence[str], mapping: Mapping[str, str] = UCF_TO_KINETICS
) -> list[str]:
    """Replace ``model.classifier`` by a head over ``labels`` built from its old rows.

    Returns the labels that were mapped. Raises :class:`ModelError` when none could be,
    since a zero-shot start was asked for and would silently be a random one.
    """
    cfg = model.config
    old = model.classifier
    by_name = {str(name).lower(): int(i) for i, name in cfg.id2label.items()}
    new = nn.Linear(old.in_features, len(labels)).to(old.weight.device, old.weight.dtype)
    nn.init.trunc_normal_(new.weight, std=getattr(cfg, "initializer_range", 0.02))
    nn.init.zeros_(new.bias)
    mapped = []
    for j, label in enumerate(labels):
        source = mapping.get(label, label).lower()
        if source in by_name:
            new.weight[j] = old.weight[by_name[source]]
            new.bias[j] = old.bias[by_name[source]]
            mapped.append(label)
    if not mapped:
        raise ModelError(
            f"zero-shot start: none of {list(labels)} has a counterpart among the weights' "
            f"{cfg.num_labels} classes"
        )
    model.classifier = new
    cfg.num_labels = len(labels)
    cfg.id2label = dict(enumerate(labels))
    cfg.label2id = {name: i for i, name in enumerate(labels)}
    return mapped
