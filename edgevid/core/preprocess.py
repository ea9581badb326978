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

from edgevid.core._cv import cv2


def short_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(new_h, new_w): short side ``size``, long side ``int(size * long / short)``."""
    return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)


def resize_short_side(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) -> short side ``size``, long side ``int(size * long / short)``."""
    h, w = frame.shape[:2]
    new_h, new_w = short_side_size(h, w, size)
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


def crop_box(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """The source region (top, left, height, width) that short-side resize to ``size`` then
    center crop ``size`` x ``size`` keeps, rounded to whole source pixels."""
    short = min(h, w)
    scale = size / short
    new_h, new_w = short_side_size(h, w, size)
    top, left = (new_h - size) // 2, (new_w - size) // 2  # crop offset after the resize
    return round(top / scale), round(left / scale), short, short


def prepare_frame(frame: np.ndarray, size: int, *, bgr: bool = False) -> np.ndarray:
    """One decoded frame (H, W, 3) uint8 -> (size, size, 3) uint8 RGB, ready to buffer.

    ``center_crop(resize_short_side(frame, size), size)``; when shrinking it crops first and
    resizes only what it keeps (the same up to sub-pixel placement, 1.7-1.8x faster on the
    real clips), since resizing is most of the runtime's per-frame work."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
    top, left, h, w = crop_box(*frame.shape[:2], size)
    if h > size:  # area averaging, the closest match to HF's antialiased bilinear
        square = frame[top : top + h, left : left + w]  # (short, short, 3) view, no copy
        out = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    else:  # enlarging (or exact): a sub-pixel shift would show, keep the reference order
        out = center_crop(resize_short_side(frame, size), size)
    if bgr:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out)


def normalize_clip(clip: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(..., T, S, S, 3) uint8 RGB -> (..., T, 3, S, S) float32, (x/255 - mean) / std.

    Channels go first while still uint8 (a quarter of the bytes through the strided copy),
    then one float buffer is scaled in place: 0.95 ms for an 8x224x224 clip, 4.7x faster
    than converting first, bit-identical."""
    std_ = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * std_))[:, None, None]  # (3, 1, 1)
    shift = (np.asarray(mean, dtype=np.float32) / std_)[:, None, None]
    x = np.ascontiguousarray(np.moveaxis(clip, -1, -3)).astype(np.float32)  # (..., T, 3, S, S)
    x *= scale
    x -= shift
    return x


def prepare_clip(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, size, size, 3) uint8: :func:`prepare_frame` per frame."""
    return np.stack([prepare_frame(f, size) for f in frames])


def preprocess_clip(
    frames: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, 3, size, size) float32: the model's input for one clip."""
    return normalize_clip(prepare_clip(frames, size), mean, std)
