"""The rolling buffer: order, stride from the metadata, gaps left by dropped frames."""

from __future__ import annotations

import numpy as np
import pytest

from edgevid.core.meta import Sampling
from edgevid.core.preprocess import prepare_frame
from edgevid.runtime.buffer import ClipBuffer


def numbered(i: int, size: int = 16) -> np.ndarray:
    """A (size, size + 8, 3) frame whose pixels all equal i: its number survives resizing."""
    return np.full((size, size + 8, 3), i, np.uint8)


def test_clip_is_oldest_first_and_rolls():
    buf = ClipBuffer(num_frames=4, image_size=8, stride=1)
    for i in range(6):
        buf.push(i, numbered(i))
    clip = buf.clip()
    assert clip.shape == (4, 8, 8, 3) and clip.dtype == np.uint8
    assert [int(f[0, 0, 0]) for f in clip] == [2, 3, 4, 5]
    np.testing.assert_array_equal(buf.indices(), [2, 3, 4, 5])  # stream indices


@pytest.mark.parametrize("stride", [1, 2, 3, 5])
def test_stride_keeps_every_kth_frame(stride):
    buf = ClipBuffer(num_frames=8, image_size=8, stride=stride)
    kept = [i for i in range(60) if buf.push(i, numbered(i))]
    assert kept == list(range(0, 60, stride))
    assert [int(f[0, 0, 0]) for f in buf.clip()] == kept[-8:]


def test_gaps_from_dropped_frames_are_tolerated():
    buf = ClipBuffer(num_frames=3, image_size=8, stride=2)
    for i in (0, 1, 5, 6, 7, 8):  # 2..4 were dropped upstream
        buf.push(i, numbered(i))
    assert [int(f[0, 0, 0]) for f in buf.clip()] == [0, 5, 7]  # after 5, the next is 7


def test_not_full_until_t_frames_and_clip_refuses():
    buf = ClipBuffer(num_frames=4, image_size=8)
    for i in range(3):
        buf.push(i, numbered(i))
    assert not buf.full and buf.count == 3
    with pytest.raises(ValueError, match="3 of 4"):
        buf.clip()
    buf.push(3, numbered(3))
    assert buf.full


def test_frames_are_prepared_like_training():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = ClipBuffer(num_frames=1, image_size=32)
    buf.push(0, frame)
    np.testing.assert_array_equal(buf.clip()[0], prepare_frame(frame, 32))


@pytest.mark.parametrize(
    ("clip_seconds", "fps", "expected"),
    [(2.56, 25.0, 8), (2.56, 30.0, 10), (1.0, 8.0, 1), (None, 30.0, 1)],
)
def test_stream_stride_spans_a_training_clip(clip_seconds, fps, expected):
    s = Sampling(num_frames=8, clip_seconds=clip_seconds)
    stride = s.stream_stride(fps)
    assert stride == expected
    if clip_seconds:  # 8 frames at this stride span the clip's duration (to one frame)
        assert abs(8 * stride / fps - clip_seconds) <= 1 / fps * 8
