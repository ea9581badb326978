"""Evaluation clips, numpy only: the exact input ``edgevid run`` gives an exported model.

    path -> uniform segment-centre indices -> read_frames -> preprocess_clip -> (T, 3, S, S)

Shared by the torch Dataset (validation during training) and by :mod:`evaluate`, whose
prediction function may be an ONNX Runtime or TensorRT session rather than torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from edgevid.errors import VideoError
from edgevid.meta import ModelMeta
from edgevid.runtime.preprocess import preprocess_clip
from edgevid.runtime.sampling import uniform_indices
from edgevid.runtime.video import probe_video, read_frames


def eval_clip(path: str | os.PathLike, meta: ModelMeta) -> np.ndarray:
    """One video -> (T, 3, S, S) float32, sampled and preprocessed deterministically."""
    n = probe_video(path).num_frames
    frames = read_frames(path, uniform_indices(n, meta.num_frames))  # (T, H, W, 3) uint8
    return preprocess_clip(frames, meta.image_size, meta.mean, meta.std)


def clip_batches(
    paths: Sequence[str | os.PathLike],
    targets: Sequence[int],
    meta: ModelMeta,
    batch_size: int = 8,
    skipped: list[str] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ((B, T, 3, S, S) float32, (B,) int64); undecodable clips go to ``skipped``."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for path, y in zip(paths, targets, strict=True):
        try:
            xs.append(eval_clip(path, meta))
            ys.append(int(y))
        except VideoError as e:
            if skipped is not None:
                skipped.append(f"{path} ({e})")
        if len(xs) == batch_size:
            yield np.stack(xs), np.asarray(ys, np.int64)
            xs, ys = [], []
    if xs:
        yield np.stack(xs), np.asarray(ys, np.int64)
