"""Clip augmentation on uint8 RGB frames (numpy + OpenCV), one random draw per clip.

Every frame of a clip gets the same crop, flip and colour change, so motion stays intact.
The output is (T, size, size, 3) uint8, ready for ``normalize_clip`` like a runtime clip.
"""

from __future__ import annotations

import math

import numpy as np

from edgevid.core._cv import cv2
from edgevid.train.config import AugmentConfig


def random_resized_crop(
    clip: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """(T, H, W, 3) -> (T, size, size, 3): one random box (area, aspect) resized to size²."""
    _, h, w, _ = clip.shape
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # fall back to the central square
        ch = cw = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    interp = cv2.INTER_AREA if ch > size else cv2.INTER_LINEAR
    return np.stack(
        [
            cv2.resize(f[top : top + ch, left : left + cw], (size, size), interpolation=interp)
            for f in clip
        ]
    )


def color_jitter(
    clip: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
) -> np.ndarray:
    """(T, H, W, 3) uint8 -> same shape: brightness, contrast and saturation scaled at random."""
    x = clip.astype(np.float32)
    b = rng.uniform(1 - brightness, 1 + brightness)
    c = rng.uniform(1 - contrast, 1 + contrast)
    s = rng.uniform(1 - saturation, 1 + saturation)
    x *= b
    x = (x - x.mean()) * c + x.mean()
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)  # (T, H, W)
    x = (x - gray[..., None]) * s + gray[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def augment_clip(
    clip: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8: crop, optional flip, colour jitter."""
    out = random_resized_crop(clip, size, rng, cfg.scale, cfg.ratio)
    if cfg.hflip and rng.random() < cfg.hflip:
        out = out[:, :, ::-1]
    if cfg.brightness or cfg.contrast or cfg.saturation:
        out = color_jitter(out, rng, cfg.brightness, cfg.contrast, cfg.saturation)
    return np.ascontiguousarray(out)
