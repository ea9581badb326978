"""Motion gating: a cheap detector on the frames the loop already decodes, so that a stream
where nothing moves costs its decode and no inference.

Each frame is sampled down to a few dozen rows of its green channel (``MotionConfig.height``;
green carries most of the luma, and a strided view costs no copy of the full frame),
blurred over 3x3 pixels (which hides sensor noise), compared with a running average of the
previous ones (the background, as Frigate's motion detector keeps it), and counted as moving
when more than ``min_area`` of its pixels differ from the background by more than
``threshold`` grey levels.

A window is worth an inference while it holds a moving frame: :class:`MotionGate` keeps,
per stream, the index up to which windows still see the latest motion (that frame plus one
window span), so the first window after stillness that holds motion is classified at its
due frame, and the windows of a still scene are skipped.

    gate = MotionGate(span=32)                # span: frames one window covers (T * stride)
    for frame in frames:
        gate.observe(frame.index, frame.image)  # (H, W, 3) uint8 RGB
        if due(frame) and gate.moving(frame.index):
            classify(...)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GATES = ("none", "motion")  # --gate choices


@dataclass(frozen=True)
class MotionConfig:
    height: int = 72  # rows of the sampled frame compared (at least; never upscaled)
    threshold: int = 25  # grey levels (0-255) a pixel must differ from the background by
    min_area: float = 0.002  # share of the shrunk frame's pixels that must differ: motion
    alpha: float = 0.2  # background update rate per frame (cv2.accumulateWeighted)


class MotionDetector:
    """One stream's background and its per-frame motion test."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        from edgevid.core._cv import cv2  # here: the CLI reads MotionConfig without OpenCV

        self._cv2 = cv2
        self.config = config or MotionConfig()
        self._background: np.ndarray | None = None  # (h, w) float32 running average
        self.area = 0.0  # share of pixels that differed in the latest frame

    def small(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (h, w) float32, every k-th pixel of the green channel
        (k = H // height, at least 1), blurred 3x3."""
        k = max(1, image.shape[0] // self.config.height)
        green = image[k // 2 :: k, k // 2 :: k, 1].astype(np.float32)  # (h, w)
        return self._cv2.GaussianBlur(green, (3, 3), 0)

    def __call__(self, image: np.ndarray) -> bool:
        """Does ``image`` (H, W, 3) uint8 RGB differ from the background? Updates it."""
        gray = self.small(image)
        bg = self._background
        if bg is None or bg.shape != gray.shape:  # first frame (or a new size): learn it
            self._background, self.area = gray, 0.0
            return False
        moved = self._cv2.absdiff(gray, bg) > self.config.threshold
        self.area = float(np.count_nonzero(moved)) / moved.size
        self._cv2.accumulateWeighted(gray, bg, self.config.alpha)
        return self.area > self.config.min_area


class MotionGate:
    """Per stream: which windows hold motion. A new stream counts as moving for its first
    ``span`` frames (the background is not learned yet), so its first window is classified."""

    def __init__(self, span: int, config: MotionConfig | None = None) -> None:
        self.span = span  # frames one window covers: motion at i is in windows up to i + span
        self.detector = MotionDetector(config)
        self.until = span - 1  # last frame index whose window still holds motion

    def observe(self, index: int, image: np.ndarray) -> bool:
        """Test frame ``index`` (H, W, 3) uint8 RGB; True if it moved."""
        moved = self.detector(image)
        if moved:
            self.until = max(self.until, index + self.span - 1)
        return moved

    def moving(self, index: int) -> bool:
        """Does the window ending at frame ``index`` hold a moving frame?"""
        return index <= self.until
