"""Clips from video files, prepared exactly as the runtime prepares its stream. No torch.

    path -> uniform segment-centre indices -> read_frames -> prepare_clip -> (T, S, S, 3) uint8
         -> graph_input -> (T, 3, S, S) float32 normalised | the uint8 clip (uint8-input graph)

The one definition of an evaluation clip: training's validation, ``edgevid eval``, INT8
calibration, export verification and the runtime's Classifier all go through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.core.manifest import Manifest, load_or_split
from edgevid.core.meta import ModelMeta
from edgevid.core.preprocess import normalize_clip, prepare_clip
from edgevid.core.sampling import uniform_indices
from edgevid.core.video import is_video_file, probe_video, read_frames
from edgevid.errors import DataError, VideoError


@dataclass
class ClipSet:
    """Prepared clips with their labels and where they came from."""

    frames: np.ndarray  # (N, T, S, S, 3) uint8 RGB, resized and cropped
    labels: list[int | None]  # class index per clip (None: unlabelled)
    sources: list[str]  # file per clip
    classes: list[str] = field(default_factory=list)  # class names of ``labels``

    def __len__(self) -> int:
        return len(self.frames)

    def record(self, **extra: Any) -> dict[str, Any]:
        """A small JSON-able summary for the metadata (which clips, how many per class)."""
        per_class: dict[str, int] = {}
        for label in self.labels:
            key = self.classes[label] if label is not None and self.classes else "unlabelled"
            per_class[key] = per_class.get(key, 0) + 1
        return {"clips": len(self), "per_class": per_class, **extra}


def load_clip(
    path: str | os.PathLike, num_frames: int, size: int, partial: list[str] | None = None
) -> np.ndarray:
    """One video -> (T, S, S, 3) uint8: T uniform frames (segment centres), resized, cropped.
    A damaged or truncated file that decoded short is described in ``partial``."""
    info = probe_video(path)
    indices = uniform_indices(info.num_frames, num_frames)
    frames = read_frames(path, indices, partial)  # (T, H, W, 3)
    return prepare_clip(frames, size)


def graph_input(frames: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """Prepared uint8 clips (..., T, S, S, 3) -> the input of a graph described by ``meta``."""
    if meta.input_format == "uint8":
        return np.ascontiguousarray(frames, dtype=np.uint8)
    return normalize_clip(frames, meta.mean, meta.std)  # (..., T, 3, S, S)


def eval_clip(
    path: str | os.PathLike, meta: ModelMeta, partial: list[str] | None = None
) -> np.ndarray:
    """One video -> the input of the graph ``meta`` describes, for one clip: (T, 3, S, S)
    float32 normalised (a torch model, a float graph) or (T, S, S, 3) uint8."""
    return graph_input(load_clip(path, meta.num_frames, meta.image_size, partial), meta)


def clip_batches(
    paths: Sequence[str | os.PathLike],
    targets: Sequence[int],
    meta: ModelMeta,
    batch_size: int = 8,
    skipped: list[str] | None = None,
    partial: list[str] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (graph input (B, ...) as :func:`eval_clip`, (B,) int64 targets); undecodable
    clips go to ``skipped``, damaged ones that decoded in part (and are evaluated on what
    decoded) to ``partial``."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for path, y in zip(paths, targets, strict=True):
        try:
            xs.append(eval_clip(path, meta, partial))
            ys.append(int(y))
        except VideoError as e:
            if skipped is not None:
                skipped.append(f"{path} ({e})")
        if len(xs) == batch_size:
            yield np.stack(xs), np.asarray(ys, np.int64)
            xs, ys = [], []
    if xs:
        yield np.stack(xs), np.asarray(ys, np.int64)


def balanced_samples(
    manifest: Manifest, split: str, num_clips: int, seed: int = 0
) -> list[tuple[Path, int]]:
    """Up to ``num_clips`` (path, label) of ``split``, round-robin over classes (shuffled)."""
    if split not in manifest.splits:
        raise DataError(f"manifest has no split {split!r}")
    rng = np.random.default_rng(seed)
    per_class: dict[int, list[Path]] = {}
    for path, label in zip(manifest.paths(split), manifest.labels(split), strict=True):
        per_class.setdefault(label, []).append(path)
    queues = {
        c: [p for p in rng.permutation(np.array(ps, dtype=object))] for c, ps in per_class.items()
    }
    picked: list[tuple[Path, int]] = []
    while len(picked) < num_clips and any(queues.values()):
        for label in sorted(queues):
            if queues[label] and len(picked) < num_clips:
                picked.append((Path(queues[label].pop()), label))
    return picked


Progress = Callable[[int], None]  # called with 1 per clip decoded (a progress bar's update)


def load_clips(
    samples: Sequence[tuple[Path, int | None]],
    meta: ModelMeta,
    classes: Sequence[str] = (),
    progress: Progress | None = None,
) -> ClipSet:
    """Decode and prepare ``samples``; unreadable videos are skipped (at least one must load)."""
    frames, labels, sources = [], [], []
    for path, label in samples:
        if progress:
            progress(1)
        try:
            frames.append(load_clip(path, meta.num_frames, meta.image_size))
        except VideoError:
            continue
        labels.append(label)
        sources.append(str(path))
    if not frames:
        raise DataError(f"none of the {len(samples)} calibration/verification clips could be read")
    return ClipSet(np.stack(frames), labels, sources, list(classes))


def dataset_clips(
    data: str | os.PathLike,
    meta: ModelMeta,
    num_clips: int,
    split: str = "train",
    seed: int = 0,
    progress: Progress | None = None,
) -> ClipSet:
    """Class-balanced clips of ``split`` from a dataset folder or manifest (``edgevid data``)."""
    manifest = load_or_split(data)
    samples = balanced_samples(manifest, split, num_clips, seed)
    if not samples:
        raise DataError(f"{data}: the {split!r} split has no clips")
    return load_clips(samples, meta, manifest.classes, progress)


def folder_clips(
    folder: str | os.PathLike,
    meta: ModelMeta,
    num_clips: int = 16,
    progress: Progress | None = None,
) -> ClipSet:
    """Unlabelled clips from every video in ``folder`` (e.g. a few recordings of the scene)."""
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and is_video_file(p))
    if not paths:
        raise DataError(f"{folder}: no videos found")
    return load_clips([(p, None) for p in paths[:num_clips]], meta, progress=progress)
