"""The synthetic motion dataset: layout, labels, and that the motion is the label."""

from __future__ import annotations

import numpy as np
import pytest

from edgevid.core.video import probe_video, read_video
from edgevid.errors import DataError
from edgevid.train.synth import (
    _SHAPES,
    MOTIONS,
    SynthConfig,
    _Scene,
    make_synthetic_dataset,
    render_action,
    render_clip,
)


def test_layout_names_and_sizes(synth_root):
    for motion in MOTIONS[:5]:
        clips = sorted((synth_root / motion).glob("*.mp4"))
        assert len(clips) == 10
        assert all(c.name.startswith(f"v_{motion}_g") for c in clips)
        info = probe_video(clips[0])
        assert (info.width, info.height, info.fps) == (80, 64, 15.0)
        assert 18 <= info.num_frames <= 30
    assert not (synth_root / MOTIONS[5]).exists()


def _plain_scene() -> _Scene:
    cfg = SynthConfig()
    return _Scene(np.zeros((cfg.height, cfg.width, 3), np.uint8), _SHAPES["bar"], (255, 255, 255))


def _track(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid x, centroid y and area of the bright object in each frame."""
    mask = frames.mean(axis=3) > 128
    ys, xs = np.indices(mask.shape[1:])
    area = mask.sum(axis=(1, 2))
    cx = (mask * xs).sum(axis=(1, 2)) / area
    cy = (mask * ys).sum(axis=(1, 2)) / area
    return cx, cy, area


@pytest.mark.parametrize(
    "motion, check",
    [
        ("MoveLeft", lambda cx, cy, a: cx[-1] < cx[0] - 15),
        ("MoveRight", lambda cx, cy, a: cx[-1] > cx[0] + 15),
        ("MoveUp", lambda cx, cy, a: cy[-1] < cy[0] - 15),
        ("MoveDown", lambda cx, cy, a: cy[-1] > cy[0] + 15),
        ("Grow", lambda cx, cy, a: a[-1] > 3 * a[0]),
        ("Shrink", lambda cx, cy, a: a[0] > 3 * a[-1]),
    ],
)
def test_motion_is_what_the_label_says(motion, check):
    cfg = SynthConfig(noise=0)
    frames = render_clip(motion, 24, np.random.default_rng(5), cfg, _plain_scene())
    assert frames.shape == (24, 64, 80, 3)
    assert check(*_track(frames))


def test_turning_changes_orientation_not_position():
    cfg = SynthConfig(noise=0)
    frames = render_clip("TurnCW", 24, np.random.default_rng(2), cfg, _plain_scene())
    cx, cy, area = _track(frames)
    assert np.ptp(cx) < 4 and np.ptp(cy) < 4
    assert not np.array_equal(frames[0], frames[-1])


def test_one_frame_does_not_tell_left_from_right():
    """Mid-clip frames of the two classes have the same position distribution."""
    cfg = SynthConfig(noise=0)
    mids = {}
    for motion in ("MoveLeft", "MoveRight"):
        rng = np.random.default_rng(0)
        mids[motion] = [
            _track(render_clip(motion, 21, rng, cfg, _plain_scene())[10:11])[0][0]
            for _ in range(40)
        ]
    assert abs(np.mean(mids["MoveLeft"]) - np.mean(mids["MoveRight"])) < 3


def test_a_long_action_is_whole_clips_at_training_speed():
    """An untrimmed action: back-to-back clips whose cuts redraw the actor (the one step
    backwards per cut), each moving at a training clip's speed, the last one cut short
    rather than squeezed (the frame-to-frame step never exceeds a whole clip's)."""
    cfg = SynthConfig(noise=0)
    frames = render_action("MoveLeft", 70, np.random.default_rng(3), cfg, _plain_scene())
    step = np.diff(_track(frames)[0])  # (69,) x displacement per frame
    cuts = step > 0
    assert frames.shape == (70, 64, 80, 3) and 2 <= cuts.sum() <= 70 // cfg.min_frames
    most = 0.6 * cfg.height / (cfg.min_frames - 1)  # a whole clip's fastest step
    assert (-step[~cuts] < most + 0.5).all() and (-step[~cuts] > 0.2).all()


def test_cut_share_puts_cuts_in_clips(tmp_path):
    cfg = SynthConfig(noise=0, cut_share=1.0)
    clips = make_synthetic_dataset(tmp_path / "d", classes=2, clips_per_class=6, config=cfg)
    for path in clips[:6]:  # MoveLeft: one step to the right at the cut
        assert (np.diff(_track(read_video(path)[0].astype(np.float32))[0]) > 3).sum() == 1


def test_same_seed_same_files(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", classes=2, clips_per_class=2, seed=7)
    b = make_synthetic_dataset(tmp_path / "b", classes=2, clips_per_class=2, seed=7)
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(read_video(pa)[0], read_video(pb)[0])


def test_chosen_motions_only(tmp_path):
    clips = make_synthetic_dataset(tmp_path / "d", motions=("MoveUp", "Grow"), clips_per_class=1)
    assert sorted(p.parent.name for p in clips) == ["Grow", "MoveUp"]


@pytest.mark.parametrize(
    "kw",
    [
        {"classes": 1},
        {"classes": 9},
        {"clips_per_class": 0},
        {"motions": ("Grow",)},
        {"motions": ("Grow", "Grow")},
        {"motions": ("Grow", "Jump")},
    ],
)
def test_bad_arguments(tmp_path, kw):
    with pytest.raises(DataError):
        make_synthetic_dataset(tmp_path, **kw)


@pytest.mark.parametrize("motions", [(), ("Grow",), ("Grow", "Jump")])
def test_untrimmed_video_refuses_the_motions_the_dataset_refuses(tmp_path, motions):
    from edgevid.train.synth import make_untrimmed_video

    with pytest.raises(DataError, match="need 2 to"):
        make_synthetic_dataset(tmp_path / "d", motions=motions)
    with pytest.raises(DataError, match="need 2 to"):
        make_untrimmed_video(tmp_path / "u.mp4", motions=motions)
    assert not (tmp_path / "u.mp4").exists()
