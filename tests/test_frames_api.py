"""Frames in, frames out: stream() / predict() over a numpy clip, a generator of frames and an
OpenCV capture (pulled lazily), results that carry their frame and plot it, segment events
live from Python, and one top_k shape in Python and JSON. Real clips decoded by OpenCV, a
real ONNX Runtime session."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgevid
from edgevid.core._cv import cv2
from edgevid.core.video import iter_frames, read_video
from edgevid.errors import EdgevidError, SourceError
from edgevid.runtime import (
    LabelScore,
    Result,
    Segment,
    SegmentConfig,
    Streamer,
    run_streams,
    stream,
    stream_events,
)

pytest.importorskip("onnx", reason="test graphs need the export extra (onnx)")

CLIP = "carphone_pristine.mp4"  # 120 frames, 176x144, 29.97 fps: small enough to hold
# segments that open on the first window of a label and close as soon as it is not on top:
# an untrained model's near-uniform probabilities still make events to compare
EAGER = SegmentConfig(open_threshold=0.0, close_threshold=0.0, min_on_s=0.0, min_off_s=0.0)


def _same(a: list[Result], b: list[Result]) -> None:
    assert [r.frame for r in a] == [r.frame for r in b]
    assert [r.label for r in a] == [r.label for r in b]
    np.testing.assert_allclose([r.probs for r in a], [r.probs for r in b], atol=1e-6)


def test_a_generator_is_pulled_lazily(tiny_onnx, media_dir):
    """The first result comes after about one window of frames, not the whole generator."""
    pulled = 0

    def frames():
        nonlocal pulled
        for frame in iter_frames(media_dir / "bikes.mp4"):  # 250 frames
            pulled += 1
            yield frame

    streamer = Streamer(frames(), tiny_onnx, fps=25)
    lane = streamer.lanes[0]
    window = (lane.buffer.num_frames - 1) * lane.buffer.stride + 1  # frames one window spans
    queue = streamer.config.capture.queue_size
    results = (r for step in streamer.steps() for r in step.results)
    first = next(results)
    assert first.frame == window - 1  # the first full window
    assert window <= pulled <= window + queue + 1, (pulled, window)  # + the queue, in hand
    results.close()  # leaving the loop stops pulling: the generator is not drained
    assert pulled < 100, pulled


def test_stream_of_a_generator_yields_before_the_generator_ends(tiny_onnx, media_dir):
    """stream(generator, model, fps=25) as the issue states it: the count at the first yield."""
    pulled = []

    def frames():
        for i, frame in enumerate(iter_frames(media_dir / "bikes.mp4")):
            pulled.append(i)
            yield frame

    it = stream(frames(), tiny_onnx, fps=25)
    first = next(it)
    assert len(pulled) < 40 and first.source == "<generator>"
    it.close()


def test_clip_generator_and_capture_match_the_file(tiny_onnx, media_dir):
    """One video four ways (file, numpy clip, generator, cv2.VideoCapture): the same windows,
    labels and probabilities; the caller's capture is left open for the caller."""
    path = media_dir / CLIP
    frames, fps = read_video(path)
    from_file = list(stream(str(path), tiny_onnx))
    _same(list(stream(frames, tiny_onnx, fps=fps)), from_file)
    _same(list(stream(iter(frames), tiny_onnx, fps=fps)), from_file)
    cap = cv2.VideoCapture(str(path))
    try:
        got = list(stream(cap, tiny_onnx))  # its own frame rate
        assert cap.isOpened()
    finally:
        cap.release()
    _same(got, from_file)
    assert got[0].source == "<VideoCapture>" and got[0].timestamp == from_file[0].timestamp


def test_a_list_is_several_sources(tiny_onnx, media_dir):
    frames, fps = read_video(media_dir / CLIP)
    results = list(stream([frames, frames[:60]], tiny_onnx, fps=fps))
    assert {r.stream for r in results} == {0, 1}


def test_plot_draws_the_label_on_the_kept_frame(tiny_onnx, media_dir):
    frames, fps = read_video(media_dir / "bikes.mp4")
    results = list(stream(frames[:40], tiny_onnx, fps=fps, keep_frames=True))
    r = results[0]
    np.testing.assert_array_equal(r.orig_img, frames[r.frame])  # the newest frame of the window
    image = r.plot()
    h = image.shape[0]
    assert image.shape == r.orig_img.shape and image.dtype == np.uint8
    band = slice(0, h // 8)  # the label, its score and the score bar are drawn up here
    assert (image[band] != r.orig_img[band]).any(axis=-1).mean() > 0.5
    np.testing.assert_array_equal(image[h // 2 :], r.orig_img[h // 2 :])  # far from it: as given
    np.testing.assert_array_equal(r.orig_img, frames[r.frame])  # plot() drew on a copy


def test_plot_without_kept_frames_is_a_clear_error(tiny_onnx, media_dir):
    frames, fps = read_video(media_dir / CLIP)
    r = next(iter(stream(frames, tiny_onnx, fps=fps)))
    assert r.orig_img is None
    with pytest.raises(EdgevidError, match="keep_frames=True"):
        r.plot()


def test_segment_events_live_equal_the_run_callback(tiny_onnx, media_dir):
    """stream_events: each Result followed by the segment events it caused, the same events
    run_streams hands its documented on_segment callback."""
    path = str(media_dir / "bikes.mp4")
    events = list(stream_events(path, tiny_onnx, segments=EAGER))
    results = [e for e in events if isinstance(e, Result)]
    segments = [e for e in events if isinstance(e, Segment)]
    assert results and segments and len(results) + len(segments) == len(events)
    assert isinstance(events[0], Result)
    for before, event in zip(events, events[1:], strict=False):
        if isinstance(event, Segment) and event.state == "open":  # right after its window
            last = before if isinstance(before, Result) else None
            assert last is None or event.start <= last.window_centre
    assert segments[-1].state == "closed"
    assert sum(s.state == "open" for s in segments) == sum(s.state == "closed" for s in segments)

    called: list[Segment] = []
    run_streams(Streamer(path, tiny_onnx), segments=EAGER, on_segment=called.append)
    assert [stable(s.to_json()) for s in called] == [stable(s.to_json()) for s in segments]


def stable(record: dict) -> dict:
    """A record without what differs between two runs: its id and when it was made."""
    return {k: v for k, v in record.items() if k not in ("id", "time", "unix")}


def test_top_k_has_one_shape_in_python_and_json(tiny_onnx, media_dir):
    r = next(iter(stream(str(media_dir / CLIP), tiny_onnx, top_k=2)))
    assert all(isinstance(c, LabelScore) for c in r.top_k) and len(r.top_k) == 2
    best = r.top_k[0]
    label, score = best  # still a pair
    assert (label, score) == (best.label, best.score) == (r.label, r.score)
    row = json.loads(json.dumps(r.to_json()))
    assert row["top_k"] == [{"label": c.label, "score": round(c.score, 5)} for c in r.top_k]


def test_predict_takes_a_clip(tiny_onnx, media_dir):
    path = media_dir / CLIP
    frames, fps = read_video(path)
    a, b = edgevid.predict(frames, tiny_onnx, fps=fps), edgevid.predict(str(path), tiny_onnx)
    ja, jb = a.to_json(), b.to_json()
    for j in (ja, jb):  # two runs: their segments differ in id and wall-clock time only
        j["segments"], j["top_k"] = [stable(s) for s in j["segments"]], None
    assert ja == jb
    np.testing.assert_allclose([c.score for c in a.top_k], [c.score for c in b.top_k], atol=1e-6)
    assert isinstance(a.top_k[0], LabelScore)


@pytest.mark.parametrize(
    "source, needle",
    [
        (np.zeros((8, 64, 64), np.uint8), "(T, H, W, 3) uint8"),
        (np.zeros((8, 64, 64, 3), np.float32), "(T, H, W, 3) uint8"),
    ],
    ids=["no-channels", "float-clip"],
)
def test_a_bad_clip_is_refused_up_front(tiny_onnx, source, needle):
    with pytest.raises(SourceError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        Streamer(source, tiny_onnx)


@pytest.mark.parametrize("source", [None, 2.5], ids=["none", "float"])
def test_what_is_no_source_is_one_clear_error(tiny_onnx, source):
    with pytest.raises(SourceError, match="is not a video source"):
        Streamer(source, tiny_onnx)


def test_a_bad_frame_from_a_generator_is_one_clear_error(tiny_onnx):
    def frames():
        yield np.zeros((64, 64, 3), np.uint8)
        yield np.zeros((64, 64, 3), np.float32)

    with pytest.raises(SourceError) as e:
        list(stream(frames(), tiny_onnx))
    assert "frame 1" in str(e.value) and "\n" not in str(e.value)
