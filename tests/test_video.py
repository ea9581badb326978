"""Decoding real and synthetic video files with OpenCV; clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from edgevid.core.video import iter_frames, probe_video, read_frames, read_video, write_video
from edgevid.errors import VideoError
from tests.conftest import MEDIA_CLIPS


@pytest.mark.parametrize("name", sorted(MEDIA_CLIPS))
def test_probe_real_clips(media_dir, name):
    frames, w, h, fps = MEDIA_CLIPS[name]
    info = probe_video(media_dir / name)
    assert (info.num_frames, info.width, info.height) == (frames, w, h)
    assert info.fps == pytest.approx(fps, rel=1e-3)


@pytest.mark.parametrize("name", sorted(MEDIA_CLIPS))
def test_read_frames_matches_sequential_decode(media_dir, name):
    path = media_dir / name
    all_frames = list(iter_frames(path))
    assert len(all_frames) == MEDIA_CLIPS[name][0]
    idx = [len(all_frames) - 1, 0, 5, 5, 17]  # any order, repeats allowed
    clip = read_frames(path, idx)
    assert clip.shape == (5, *all_frames[0].shape) and clip.dtype == np.uint8
    for got, i in zip(clip, idx, strict=True):
        np.testing.assert_array_equal(got, all_frames[i])


def test_read_frames_past_the_end_repeats_last_frame(media_dir):
    path = media_dir / "carphone_pristine.mp4"
    clip = read_frames(path, [118, 119, 500])
    np.testing.assert_array_equal(clip[1], clip[2])


def test_frames_are_rgb(tmp_path):
    red = np.zeros((4, 32, 48, 3), np.uint8)
    red[..., 0] = 255  # pure red in RGB
    path = write_video(tmp_path / "red.avi", red, fps=10)
    frames, fps = read_video(path)
    assert frames.shape == (4, 32, 48, 3) and fps == pytest.approx(10)
    assert frames[..., 0].mean() > 200 and frames[..., 2].mean() < 50


def test_write_video_leaves_no_temp_files(tmp_path):
    write_video(tmp_path / "a.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=5)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_write_video_failure_keeps_previous_file(tmp_path):
    path = write_video(tmp_path / "a.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=5)
    before = path.read_bytes()
    with pytest.raises(VideoError, match="no frames"):
        write_video(path, [], fps=5)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"this is not a video at all" * 100, "cannot be opened"),
    ],
)
def test_bad_files_raise_video_error(tmp_path, content, message):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message):
        probe_video(path)


def test_truncated_file_is_reported(media_dir, tmp_path):
    data = (media_dir / "bikes.mp4").read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 50])  # header survives, moov atom at the end does not
    with pytest.raises(VideoError):
        read_frames(path, [0, 100])
