"""Size and cost of a variant, measured on the meta device (no memory, no weights)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgevid.train.models.registry import create_model, model_spec


@dataclass(frozen=True)
class Profile:
    name: str
    family: str
    layers: int
    params: int  # trainable + frozen parameters
    gflops: float  # per clip, in multiply-adds (the TimeSformer paper's convention)
    frames: int
    image_size: int

    @property
    def size_mb(self) -> float:  # fp32 weights
        return self.params * 4 / 2**20


def profile_model(model: torch.nn.Module, name: str = "") -> Profile:
    cfg = model.config
    device = next(model.parameters()).device
    x = torch.empty(1, cfg.num_frames, 3, cfg.image_size, cfg.image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixel_values=x)
    name = name or getattr(cfg, "edgevid_variant", "")
    return Profile(
        name=name,
        family=model_spec(name).family if name else "",
        layers=cfg.num_hidden_layers,
        params=sum(p.numel() for p in model.parameters()),
        gflops=counter.get_total_flops() / 2e9,
        frames=cfg.num_frames,
        image_size=cfg.image_size,
    )


def profile_variant(name: str, num_classes: int = 5) -> Profile:
    with torch.device("meta"):
        model = create_model(name, labels=[f"c{i}" for i in range(num_classes)])
    return profile_model(model.eval(), name)
