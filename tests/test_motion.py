"""Motion gating (`--gate motion`): the detector on real clips and still scenes encoded to
real files, and the loop with a tiny exported model: no inference on a still scene after
warm-up, inference within one stride of motion, open segments closed when the stream goes
still, and results unchanged when every window moves or the gate is off."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgevid.core._cv import cv2
from edgevid.core.video import read_video, write_video
from edgevid.runtime.classifier import Classifier
from edgevid.runtime.motion import MotionDetector, MotionGate
from edgevid.runtime.run import run_streams
from edgevid.runtime.segments import SegmentConfig
from edgevid.runtime.streamer import Streamer, stream

pytest.importorskip("onnx", reason="test graphs need the export extra (onnx)")

EVERY = 8
FPS = 25.0


def frames_of(path: Path, limit: int | None = None) -> np.ndarray:
    frames, _ = read_video(path)
    return frames[:limit]


def still_frames(image: np.ndarray, n: int, seed: int = 0, noise: float = 3.0) -> np.ndarray:
    """``n`` frames of one image with fresh sensor-like noise in each: (n, H, W, 3)."""
    rng = np.random.default_rng(seed)
    shots = image[None].astype(np.float32) + rng.normal(0, noise, (n, *image.shape))
    return np.clip(shots, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bikes(media_dir) -> np.ndarray:
    return frames_of(media_dir / "bikes.mp4")


@pytest.fixture(scope="module")
def scene(bikes, tmp_path_factory) -> dict[str, Path]:
    """Encoded videos over the bikes scene: still; still -> moving -> still."""
    out = tmp_path_factory.mktemp("scene")
    still = still_frames(bikes[0], 240)
    moving = bikes[:80]
    return {
        "still": write_video(out / "still.mp4", still, FPS),
        "gap": write_video(
            out / "gap.mp4",
            np.concatenate([still[:100], moving, still_frames(moving[-1], 140)]),
            FPS,
        ),
    }


def detect(frames: np.ndarray) -> list[bool]:
    detector = MotionDetector()
    return [detector(f) for f in frames]


# --- the detector ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"])
def test_detector_defaults_see_motion_in_the_shared_clips_and_none_in_still_ones(
    name, media_dir, tmp_path
):
    frames = frames_of(media_dir / name)
    moving = detect(frames)
    assert np.mean(moving[1:]) > 0.8, f"{name}: motion in {np.mean(moving):.0%} of frames"
    # the same scene held still, with camera noise, through a real encode and decode
    still = write_video(tmp_path / "still.mp4", still_frames(frames[len(frames) // 2], 60), FPS)
    assert not any(detect(frames_of(still)))


def test_a_small_moving_object_is_motion_and_noise_is_not():
    rng = np.random.default_rng(1)
    background = rng.integers(40, 120, (360, 640, 3), np.uint8)
    detector = MotionDetector()
    for frame in still_frames(background, 20, noise=6.0):  # heavy noise, nothing moves
        assert not detector(frame)
    for x in range(0, 200, 20):  # a 40 x 40 square (0.7% of the frame) crossing it
        frame = background.copy()
        cv2.rectangle(frame, (100 + x, 150), (140 + x, 190), (230, 230, 230), -1)
        assert detector(frame), x


def test_gate_holds_motion_for_one_window_span():
    gate = MotionGate(span=32)
    image = np.zeros((64, 64, 3), np.uint8)
    assert gate.moving(31) and not gate.moving(32)  # a new stream: its first window counts
    for i in range(100):
        gate.observe(i, image)
    assert not gate.moving(99)
    image[10:40, 10:40] = 255
    assert gate.observe(100, image)
    assert gate.moving(100) and gate.moving(131) and not gate.moving(132)


# --- the loop --------------------------------------------------------------------------------
def test_still_scene_runs_no_inference_after_warm_up(tiny_onnx, scene):
    streamer = Streamer(scene["still"], Classifier(tiny_onnx), every=EVERY, gate="motion")
    results = [r for step in streamer.steps() for r in step.results]
    counts = streamer.stats.streams[0]
    assert len(results) == 1  # the first window, before the background is learned
    assert results[0].frame < streamer.lanes[0].gate.span
    assert counts.windows_skipped >= (240 - streamer.lanes[0].gate.span) // EVERY - 1
    assert counts.idle_s > 5.0  # of the 9.6 s clip
    assert "still windows skipped" in streamer.stats.format()


def test_motion_starts_inference_within_one_stride(tiny_onnx, scene):
    results = list(stream(scene["gap"], Classifier(tiny_onnx), every=EVERY, gate="motion"))
    after = [r.frame for r in results if r.frame >= 100]  # motion starts at frame 100
    assert after and after[0] - 100 < EVERY
    # classified every stride while it moves, then not at all once the scene is still again
    assert np.diff(after).max() == EVERY
    span = Streamer(scene["gap"], Classifier(tiny_onnx), gate="motion").lanes[0].gate.span
    # the last window holding motion (the background settles a few frames after frame 179)
    assert 179 <= after[-1] < 180 + span + EVERY


def test_open_segment_closes_when_the_stream_goes_still(tiny_onnx, scene):
    # thresholds 0: the top label opens a segment at once and never fades out on its own
    config = SegmentConfig(open_threshold=0.0, close_threshold=0.0, min_on_s=0.0, min_off_s=99)
    events: list[tuple[str, int]] = []

    def run(gate: str) -> Streamer:
        streamer = Streamer(scene["gap"], Classifier(tiny_onnx), every=EVERY, gate=gate)
        newest = lambda: streamer.lanes[0].newest.index  # noqa: E731
        run_streams(
            streamer,
            segments=config,
            json_path=None,
            on_segment=lambda s: events.append((s.state, newest())) if gate == "motion" else None,
        )
        return streamer

    run("none")
    assert not events
    streamer = run("motion")
    closes = [index for state, index in events if state == "closed"]
    assert closes, events
    last_motion = 179
    still_at = closes[-1]  # the stream went still: its segment closed there, not at the end
    assert last_motion < still_at < 319 - EVERY
    assert streamer.stats.streams[0].windows_skipped > 0


def test_predict_closes_the_segment_where_the_stream_goes_still(tiny_onnx, scene):
    import edgevid

    config = SegmentConfig(open_threshold=0.0, close_threshold=0.0, min_on_s=0.0, min_off_s=99)
    ungated = edgevid.predict(scene["gap"], tiny_onnx, segments=config)
    gated = edgevid.predict(scene["gap"], tiny_onnx, segments=config, gate="motion")
    assert ungated.segments[-1].end > 300 / FPS  # held to the end of the file (frame 319)
    assert gated.segments[-1].end < 240 / FPS  # closed when the scene stilled (frame 180)


def test_gating_changes_nothing_while_everything_moves(tiny_onnx, media_dir):
    path = media_dir / "bikes.mp4"
    clf = Classifier(tiny_onnx)
    default = list(stream(path, clf, every=EVERY))
    off = list(stream(path, clf, every=EVERY, gate="none"))
    gated = list(stream(path, clf, every=EVERY, gate="motion"))
    assert len(default) == len(off) == len(gated) > 20
    for a, b, c in zip(default, off, gated, strict=True):
        assert a.frame == b.frame == c.frame and a.label == b.label == c.label
        np.testing.assert_array_equal(a.probs, b.probs)
        np.testing.assert_array_equal(a.probs, c.probs)


def test_unknown_gate_is_a_clear_error(tiny_onnx, media_dir):
    from edgevid.errors import EdgevidError

    with pytest.raises(EdgevidError, match="unknown gate 'pixels'"):
        Streamer(media_dir / "bikes.mp4", Classifier(tiny_onnx), gate="pixels")


@pytest.mark.slow
def test_run_gate_motion_via_cli(tiny_onnx, scene, tmp_path):
    from tests.test_stream import edgevid

    log = tmp_path / "results.jsonl"
    proc = edgevid("run", "-s", str(scene["still"]), "-m", str(tiny_onnx), "--gate", "motion",
                   "--json", str(log))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(log.read_text().splitlines()) == 1  # the warm-up window alone
    assert re.search(r"motion gate: \d+ still windows skipped, [\d.]+ s idle", proc.stderr)


def test_untrimmed_video_with_still_gaps_is_still_to_the_detector_between_actions(tmp_path):
    from edgevid.train.synth import make_untrimmed_video

    video = tmp_path / "gaps.mp4"
    truth = make_untrimmed_video(video, segments=3, segment_s=(1.0, 1.5), gap_s=(1.0, 2.0))
    fps = 15.0
    for a, b in zip(truth, truth[1:], strict=False):
        assert 1.0 - 1 / fps <= b.start - a.end <= 2.0 + 1 / fps
    moved = detect(frames_of(video))
    for seg in truth:  # every action moves, every gap (after the background settles) does not
        assert np.mean(moved[seg.start_frame + 1 : seg.end_frame]) > 0.9
    for a, b in zip(truth, truth[1:], strict=False):
        assert not any(moved[a.end_frame + 8 : b.start_frame])


def test_a_gated_buffer_prepares_frames_only_when_a_clip_needs_them(bikes):
    from edgevid.runtime.buffer import ClipBuffer

    eager, lazy = ClipBuffer(8, 64, stride=2), ClipBuffer(8, 64, stride=2)
    for i, image in enumerate(bikes[:40]):
        eager.push(i, image)
        lazy.push(i, image, prepare=False)
    assert lazy.prepare_pending() == 8 and lazy.prepare_pending() == 0  # the ring holds 8
    for i, image in enumerate(bikes[40:60], 40):
        eager.push(i, image)
        lazy.push(i, image, prepare=False)
    np.testing.assert_array_equal(lazy.clip(), eager.clip())
    np.testing.assert_array_equal(lazy.indices(), eager.indices())
