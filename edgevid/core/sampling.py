"""Which frames of a clip the model sees. Shared by training, evaluation and the runtime."""

from __future__ import annotations

import numpy as np


def uniform_indices(num_available: int, num_frames: int, offset: float = 0.5) -> np.ndarray:
    """T indices, one per equal segment of the clip, at ``offset`` (0..1) inside each segment.

    ``offset=0.5`` (segment centres) is the deterministic evaluation sampling. A clip shorter
    than T frames repeats frames (uniform padding). Returns int64 of shape (T,).
    """
    if num_available <= 0:
        raise ValueError("clip has no frames")
    seg = num_available / num_frames
    idx = np.floor((np.arange(num_frames) + offset) * seg).astype(np.int64)
    return np.clip(idx, 0, num_available - 1)


def jittered_indices(num_available: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Training sampling: a random position inside each of the T segments (temporal jitter)."""
    offsets = rng.random(num_frames)
    seg = num_available / num_frames
    idx = np.floor((np.arange(num_frames) + offsets) * seg).astype(np.int64)
    return np.clip(idx, 0, num_available - 1)


def strided_indices(num_available: int, num_frames: int, stride: int, start: int = 0) -> np.ndarray:
    """T indices ``start, start+stride, ...``; past the end the last frame repeats."""
    idx = start + stride * np.arange(num_frames, dtype=np.int64)
    return np.clip(idx, 0, num_available - 1)


def random_stride_indices(
    num_available: int, num_frames: int, rng: np.random.Generator, stride_range: tuple[int, int]
) -> np.ndarray:
    """Training augmentation: a random fixed stride and start (random temporal stride)."""
    lo, hi = stride_range
    max_stride = max(1, (num_available - 1) // max(1, num_frames - 1))
    stride = int(rng.integers(min(lo, max_stride), min(hi, max_stride) + 1))
    span = stride * (num_frames - 1) + 1
    start = int(rng.integers(0, max(1, num_available - span + 1)))
    return strided_indices(num_available, num_frames, stride, start)
