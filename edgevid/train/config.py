"""Training configuration: one dataclass, one comment per field, saved beside every run.

The seed study's recipes are the defaults of :func:`recipe`: the Kinetics TimeSformer
fine-tuned with its last block unfrozen (lr 1e-4, 50 epochs) and the scratch baseline
trained from random weights (lr 1e-3, 80 epochs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgevid.errors import DataError


@dataclass
class AugmentConfig:
    """Spatial and photometric augmentation of uint8 clips (the same draw for every frame)."""

    enabled: bool = True  # False: deterministic uniform sampling + center crop (cacheable)
    temporal_jitter: bool = True  # a random frame inside each of the T segments
    scale: tuple[float, float] = (0.6, 1.0)  # random resized crop: area fraction range
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random resized crop: aspect ratio range
    hflip: float = 0.0  # flip probability; 0 by default: a flip turns MoveLeft into MoveRight
    brightness: float = 0.2  # colour jitter: +-fraction of brightness
    contrast: float = 0.2  # colour jitter: +-fraction of contrast
    saturation: float = 0.2  # colour jitter: +-fraction of saturation


@dataclass
class TrainConfig:
    """Everything that decides a training run; written to RUN_DIR/config.json."""

    variant: str = "timesformer"  # registry name (edgevid variants --all)
    weights: str | None = None  # hub id or folder; None: the variant's default, "random": none
    zero_shot: bool = False  # start the head from the matching Kinetics-400 classes
    epochs: int = 50  # passes over the training split
    batch_size: int = 8  # clips per optimiser step (per process under data parallelism)
    lr: float = 1e-4  # peak learning rate (AdamW), reached after warmup
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    warmup_epochs: float = 1.0  # linear warmup length, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.01  # final learning rate as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    unfreeze: int = 1  # train the last N encoder blocks + head; -1: every parameter
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shuffle_frames: bool = False  # control experiment: random frame order (train and eval)
    cache_features: bool = True  # cache the frozen part's outputs when augmentation is off
    clip_memory_mb: float = 1024.0  # else keep unaugmented decoded clips in RAM, per split
    num_workers: int = 0  # DataLoader worker processes decoding clips
    seed: int = 0  # seeds data order, augmentation, initialisation
    threads: int = 0  # torch CPU threads, fixed for the run (0: torch's default, recorded);
    # float sums depend on it, so a seeded run is reproduced with the same count
    save_every: int = 0  # also save last/ every N optimiser steps (0: once per epoch)
    eval_every: int = 1  # validate every N epochs (and always after the last)
    mixed_precision: str = "auto"  # "auto": bf16 on a CUDA GPU, fp32 on CPU; or "no"/"fp16"/"bf16"
    # knowledge distillation (pruning recovery): loss = kd_alpha * T^2 KL + (1 - kd_alpha) * CE
    kd_alpha: float = 0.5  # weight of the distillation term when a teacher is given
    kd_temperature: float = 2.0  # softmax temperature of teacher and student

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**_known(AugmentConfig, self.augment))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1")
        if self.lr <= 0:
            raise DataError(f"--lr must be positive, got {self.lr}")
        if self.unfreeze == 0 or self.unfreeze < -1:
            raise DataError(f"--unfreeze must be >= 1 (blocks) or -1 (all), got {self.unfreeze}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**_known(cls, d))


def recipe(variant: str, pretrained: bool, **overrides: Any) -> TrainConfig:
    """The seed study's defaults for ``variant``, then ``overrides`` (None values ignored)."""
    if pretrained:
        base: dict[str, Any] = dict(lr=1e-4, epochs=50, unfreeze=1)
    else:  # random init: everything trains (the scratch baseline's recipe)
        base = dict(lr=1e-3, epochs=80, unfreeze=-1)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(variant=variant, **base)


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
