"""Frame preprocessing, identical in training and at runtime (numpy + OpenCV, no torch).

The definition matches the Hugging Face image processor of the Kinetics TimeSformer
(``VideoMAEImageProcessor``): resize the short side to S keeping the aspect ratio, center
crop S x S, RGB, scale to 0..1, normalise with the model's mean/std, channels first.

Runtime split: :func:`prepare_frame` runs once per frame as it enters the buffer (the
expensive geometric part, on uint8); :func:`normalize_clip` runs once per inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevid.runtime._cv import cv2


def resize_short_side(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) -> short side ``size``, long side ``int(size * long / short)``."""
    h, w = frame.shape[:2]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_h, new_w) == (h, w):
        return frame
    # Area averaging when shrinking is the closest OpenCV match to PIL's antialiased
    # bilinear filter that the Hugging Face processor uses; bilinear when enlarging.
    interp = cv2.INTER_AREA if new_h < h else cv2.INTER_LINEAR
    return cv2.resize(frame, (new_w, new_h), interpolation=interp)


def center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return frame[top : top + size, left : left + size]


def prepare_frame(frame: np.ndarray, size: int, *, bgr: bool = False) -> np.ndarray:
    """One decoded frame (H, W, 3) uint8 -> (size, size, 3) uint8 RGB, ready to buffer."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
    out = center_crop(resize_short_side(frame, size), size)
    if bgr:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out)


def normalize_clip(clip: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(..., T, S, S, 3) uint8 RGB -> (..., T, 3, S, S) float32, (x/255 - mean) / std."""
    scale = 1.0 / (255.0 * np.asarray(std, dtype=np.float32))
    shift = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    x = clip.astype(np.float32) * scale - shift  # (..., T, S, S, 3)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))  # (..., T, 3, S, S)


def preprocess_clip(
    frames: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, 3, size, size) float32: the model's input for one clip."""
    prepared = np.stack([prepare_frame(f, size) for f in frames])
    return normalize_clip(prepared, mean, std)
