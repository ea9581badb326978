"""A rolling buffer of the last T prepared frames, sampled with the model's temporal stride.

A training clip of ``clip_seconds`` is seen as T frames spread over it; a stream at
``fps`` frames per second must space its T buffered frames the same way, so the buffer
keeps one frame every ``stride = meta.sampling.stream_stride(fps)`` frames and only those
are resized and cropped (the others cost nothing but their decode).

    buf = ClipBuffer(num_frames=8, image_size=224, stride=3)
    for frame in frames:
        buf.push(frame.index, frame.image)
    clip = buf.clip()                    # (T, S, S, 3) uint8 RGB, oldest first

``push(..., prepare=False)`` keeps the frame itself and prepares it only when a clip needs
it (motion gating: the frames of a still stream's skipped windows are never prepared).
"""

from __future__ import annotations

import numpy as np

from edgevid.core.preprocess import prepare_frame
from edgevid.core.sampling import uniform_indices


class ClipBuffer:
    def __init__(self, num_frames: int, image_size: int, stride: int = 1) -> None:
        if num_frames < 1 or stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
        self.num_frames, self.image_size, self.stride = num_frames, image_size, stride
        self._ring = np.zeros((num_frames, image_size, image_size, 3), np.uint8)  # (T, S, S, 3)
        self._indices = np.full(num_frames, -1, np.int64)  # stream index of each ring slot
        self._raw: list[np.ndarray | None] = [None] * num_frames  # (H, W, 3) not yet prepared
        self._head = 0  # next slot to write = oldest frame once full
        self._count = 0  # frames pushed so far (saturates at T)
        self._next_index = 0  # first stream index the buffer accepts next

    def wants(self, index: int) -> bool:
        """Is frame ``index`` one the stride keeps? (Gaps from dropped frames are tolerated.)"""
        return index >= self._next_index

    def push(self, index: int, image: np.ndarray, prepare: bool = True) -> bool:
        """Offer frame ``index`` (H, W, 3) RGB; it is kept if the stride wants it, prepared
        now or (``prepare=False``) when a clip first needs it."""
        if not self.wants(index):
            return False
        if prepare:
            self._ring[self._head] = prepare_frame(image, self.image_size)
        self._raw[self._head] = None if prepare else image
        self._indices[self._head] = index
        self._head = (self._head + 1) % self.num_frames
        self._count = min(self._count + 1, self.num_frames)
        self._next_index = index + self.stride
        return True

    @property
    def full(self) -> bool:
        return self._count == self.num_frames

    def indices(self) -> np.ndarray:
        """Stream indices of the buffered frames, oldest first: (n,) int64."""
        return np.roll(self._indices, -self._head)[self.num_frames - self._count :]

    @property
    def count(self) -> int:
        return self._count

    def prepare_pending(self) -> int:
        """Prepare the frames pushed with ``prepare=False``; returns how many there were."""
        pending = [slot for slot, image in enumerate(self._raw) if image is not None]
        for slot in pending:
            self._ring[slot] = prepare_frame(self._raw[slot], self.image_size)
            self._raw[slot] = None
        return len(pending)

    def padded_clip(self) -> np.ndarray:
        """A clip from a buffer that never filled (a file shorter than one window): the
        frames it holds, repeated uniformly to T, as training pads short videos."""
        if self._count == 0:
            raise ValueError("buffer is empty")
        self.prepare_pending()
        if self.full:
            return self.clip()
        held = self._ring[: self._count]  # not wrapped yet: slots 0..count-1 are in order
        return held[uniform_indices(self._count, self.num_frames)]  # (T, S, S, 3)

    def clip(self, out: np.ndarray | None = None) -> np.ndarray:
        """The buffered frames oldest first, (T, S, S, 3) uint8; needs a full buffer."""
        if not self.full:
            raise ValueError(f"buffer holds {self._count} of {self.num_frames} frames")
        self.prepare_pending()
        if out is None:
            out = np.empty_like(self._ring)
        k = self.num_frames - self._head
        out[:k], out[k:] = self._ring[self._head :], self._ring[: self._head]
        return out
