"""Model metadata: everything a deployed model needs to be fed exactly as it was trained.

One small JSON document travels with every artefact: ``edgevid.json`` beside a checkpoint,
``metadata_props`` inside an ONNX graph plus a ``.json`` sidecar, a sidecar beside a
TensorRT engine. The runtime reads nothing else, so it never needs torch or transformers.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgevid import __version__
from edgevid._atomic import write_json
from edgevid.core.precision import PRECISIONS
from edgevid.core.schema import (
    above,
    at_least,
    at_most,
    between,
    each,
    non_empty,
    one_of,
    read_json,
    unique,
)
from edgevid.errors import MetadataError

META_FILENAME = "edgevid.json"  # beside a checkpoint
ONNX_META_KEY = "edgevid"  # metadata_props key inside an ONNX graph

# Kinetics-400 TimeSformer (facebook/timesformer-base-finetuned-k400) preprocessing constants.
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

# Upper bounds of the numbers a metadata file may hold (a value beyond is a broken file)
MAX_CLIP_SECONDS = 24 * 3600.0  # a training clip's duration
MAX_FPS = 1000.0  # frame rate of the training data
MAX_STRIDE = 10_000  # frames between sampled frames
MAX_LAYERS = 1000  # encoder layers

INPUT_FORMATS = ("float", "uint8")  # (B,T,3,H,W) normalised float | (B,T,H,W,3) uint8 RGB
SAMPLING_MODES = ("uniform", "jittered", "strided", "random-stride")


@dataclass
class Sampling:
    """How T frames are drawn from a clip; the runtime derives its stream stride from it."""

    num_frames: int = 8  # T: frames per clip the model sees
    mode: str = "uniform"  # training: T frames spread uniformly over the whole clip
    clip_seconds: float | None = None  # typical clip duration in the training data
    frame_stride: int = 1  # equivalent fixed stride (frames at `fps`) for streaming
    fps: float | None = None  # typical frame rate of the training data

    # The file schema (edgevid.core.schema): value rules, and fields a file must carry.
    CONSTRAINTS = {
        "num_frames": at_least(1),
        "mode": one_of(*SAMPLING_MODES),
        "clip_seconds": (above(0), at_most(MAX_CLIP_SECONDS)),
        "frame_stride": between(1, MAX_STRIDE),
        "fps": (above(0), at_most(MAX_FPS)),
    }
    REQUIRED = ("num_frames", "mode")

    def stream_stride(self, stream_fps: float | None) -> int:
        """Frames to skip between buffered frames so T frames span one training clip."""
        if stream_fps and self.clip_seconds:
            return max(1, round(self.clip_seconds * stream_fps / self.num_frames))
        return max(1, int(self.frame_stride))


@dataclass
class ModelMeta:
    """What every artefact of a model records about it."""

    labels: list[str]  # class names, index = logit position
    variant: str = "timesformer"  # registry name the model was built from
    num_frames: int = 8  # T
    image_size: int = 224  # H = W after resize-short-side + center crop
    mean: tuple[float, float, float] = KINETICS_MEAN  # per-channel RGB mean (0..1 scale)
    std: tuple[float, float, float] = KINETICS_STD  # per-channel RGB std (0..1 scale)
    sampling: Sampling = field(default_factory=Sampling)
    num_layers: int | None = None  # encoder layers (after pruning)
    kept_layers: list[int] | None = None  # indices of the original layers that were kept
    precision: str = "fp32"  # a name in edgevid.core.precision.PRECISIONS
    input_format: str = "float"  # "float": (B,T,3,H,W) normalised; "uint8": (B,T,H,W,3) RGB
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific records (calibration…)
    edgevid_version: str = __version__

    # The file schema (edgevid.core.schema): what a sidecar / edgevid.json / embedded blob holds.
    CONSTRAINTS = {
        "labels": (non_empty, unique, each(lambda v: None if v.strip() else "has an empty label")),
        "variant": non_empty,
        "num_frames": between(1, 1024),
        "image_size": between(8, 8192),
        "mean": between(0, 1),
        "std": between(1e-6, 1),
        "num_layers": between(1, MAX_LAYERS),
        "kept_layers": each(between(0, MAX_LAYERS)),
        "precision": one_of(*PRECISIONS),
        "input_format": one_of(*INPUT_FORMATS),
    }
    REQUIRED = ("variant", "num_frames", "image_size", "mean", "std", "sampling", "precision",
                "input_format")  # fmt: skip

    def __post_init__(self) -> None:
        if not self.labels:
            raise MetadataError("model metadata has no labels")
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if isinstance(self.sampling, dict):
            self.sampling = Sampling(**_known(Sampling, self.sampling))
        if self.sampling.num_frames != self.num_frames:
            self.sampling.num_frames = self.num_frames

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def replace(self, **changes: Any) -> ModelMeta:
        d = self.to_dict()
        d.update(changes)
        return ModelMeta.from_dict(d)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        if not isinstance(d, dict) or "labels" not in d:
            raise MetadataError("model metadata must be a JSON object with 'labels'")
        try:
            return cls(**_known(cls, d))
        except (TypeError, ValueError) as e:
            raise MetadataError(f"malformed model metadata: {e}") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ModelMeta:
        """Metadata from a file or a graph: validated strictly (every field, its type and
        range), every problem named on one line."""
        return cls.from_dict(read_json(cls, source, "model metadata", MetadataError, text))

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (a file, or a folder that gets ``edgevid.json``), atomically."""
        path = Path(path)
        if path.is_dir():
            path = path / META_FILENAME
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelMeta:
        path = Path(path)
        if path.is_dir():
            path = path / META_FILENAME
        return cls.from_dict(read_json(cls, path, "model metadata", MetadataError))


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys ``cls`` knows: metadata written by a newer edgevid still loads."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
