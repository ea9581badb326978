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
