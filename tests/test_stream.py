"""The streaming loop and `edgevid run` / `edgevid bench` end to end, with a tiny exported
model on real clips, synthetic clips and a live MJPEG stream; clear errors via the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from edgevid.core._cv import cv2
from edgevid.core.video import iter_frames, probe_video, read_video
from edgevid.runtime.classifier import Classifier
from edgevid.runtime.streamer import Streamer, stream
from tests.conftest import read_records, with_stop_signals
from tests.test_sources import FAST, MjpegServer

onnx = pytest.importorskip("onnx", reason="test graphs need the export extra (onnx)")
from tests.test_runtime_classifier import with_metadata  # noqa: E402

RESULT_KEYS = {
    "type", "schema", "time", "unix", "stream", "source", "model", "frame", "timestamp",
    "window_start", "label", "score", "top_k", "latency_ms",
}  # fmt: skip


def edgevid(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgevid", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        **kw,
    )


def assert_clear_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """One line on stderr naming the problem, non-zero exit, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("edgevid: error:"), err
    for needle in needles:
        assert needle in err, err


# --- the loop ----------------------------------------------------------------------------
def test_file_stream_matches_offline_predictions(tiny_onnx, media_dir):
    path = media_dir / "carphone_pristine.mp4"
    clf = Classifier(tiny_onnx)
    results = list(stream(path, clf, smooth="none", every=8))
    frames, _ = read_video(path)
    assert [r.frame for r in results] == list(range(7, 120, 8))  # full buffer, then every 8
    for r in (results[0], results[6]):
        window = frames[r.frame - 7 : r.frame + 1]  # stride 1: the last 8 frames
        np.testing.assert_allclose(r.probs, clf.predict(window).probs, rtol=1e-4, atol=1e-6)
        assert r.timestamp == pytest.approx(r.frame / 29.97, rel=1e-3)
        assert r.label == clf.labels[int(np.argmax(r.probs))]


def test_stride_comes_from_the_sampling_metadata(tiny_onnx, media_dir, tmp_path):
    meta = Classifier(tiny_onnx).meta
    sampling = {**meta.sampling.__dict__, "clip_seconds": 2.56}
    model = with_metadata(tiny_onnx, tmp_path / "strided.onnx", sampling=sampling)
    path = media_dir / "bikes.mp4"  # 25 fps: 8 frames over 2.56 s -> stride 8
    s = Streamer(path, model, smooth="none", every=16, max_frames=100)
    assert s.lanes[0].buffer.stride == 8
    results = [r for step in s.steps() for r in step.results]
    assert [r.frame for r in results] == [56, 72, 88]
    frames, _ = read_video(path)
    want = s.classifier.predict(frames[0:57:8]).probs  # the 8 buffered frames of window 1
    np.testing.assert_allclose(results[0].probs, want, rtol=1e-4, atol=1e-6)
    assert s.stats.summary()["frames_read"] == 100


def test_streams_are_batched_into_one_inference(tiny_onnx, media_dir):
    clf = Classifier(tiny_onnx)
    batches: list[int] = []
    real_run = clf.backend._run

    def counting_run(x):
        batches.append(len(x))
        return real_run(x)

    clf.backend._run = counting_run
    sources = [media_dir / "bikes.mp4", media_dir / "carphone_pristine.mp4"]
    s = Streamer(sources, clf, every=8, batching="batch")  # one call per step, never timed
    per_stream = {0: 0, 1: 0}
    for step in s.steps():
        assert len({f.stream for f in step.frames}) == len(step.frames)  # <= 1 per stream
        for r in step.results:
            per_stream[r.stream] += 1
    assert per_stream == {0: 31, 1: 15}
    assert batches.count(2) == 15 and batches.count(1) == 16  # 46 results in 31 calls
    summary = s.stats.summary()
    assert [st["frames_read"] for st in summary["streams"]] == [250, 120]
    assert summary["inferences"] == 46 and summary["frames_dropped"] == 0
    assert set(summary["stages_ms"]) == {"decode", "preprocess", "buffer", "inference"}
    assert summary["batching"] == {}


def test_auto_batching_is_measured_once_and_reported_in_the_summary(tiny_onnx, media_dir):
    sources = [media_dir / "bikes.mp4", media_dir / "carphone_pristine.mp4"]
    s = Streamer(sources, tiny_onnx, every=8)  # batching "auto", the default
    results = [r for step in s.steps() for r in step.results]
    assert len(results) == 46  # as many as one batched call per step gives
    # 15 steps have both streams due: the first three are the trial, the rest as decided
    choice = s.stats.summary()["batching"]["2"]
    assert choice["batch"] == 2 and choice["batched_ms"] > 0 and choice["split_ms"] > 0
    assert "2 due clips run as" in s.stats.format()


def test_live_stream_through_the_loop(tiny_onnx):
    from edgevid.runtime.capture import CaptureConfig

    with MjpegServer(per_connection=20, fps=200) as srv:
        s = Streamer(
            srv.url, tiny_onnx, every=4, max_frames=40, options=FAST,
            capture=CaptureConfig(reconnect_s=5.0),
        )  # fmt: skip
        results = [r for step in s.steps() for r in step.results]
    counts = s.stats.streams[0]
    assert counts.reconnects >= 1 and counts.frames_read + counts.frames_dropped >= 40
    assert len(results) >= 5 and all(r.timestamp >= 0 for r in results)
    assert not any(lane.source._thread.is_alive() for lane in s.lanes)


def test_breaking_out_of_the_loop_stops_capture(tiny_onnx, media_dir):
    s = Streamer(media_dir / "bikes.mp4", tiny_onnx)
    for _ in s.steps():
        break
    s.close()
    assert not s.lanes[0].source._thread.is_alive()


# --- the CLI -------------------------------------------------------------------------------
def test_run_json_lines_schema(tiny_onnx, synth_root, tmp_path):
    clip = sorted(synth_root.rglob("*.mp4"))[0]
    n = probe_video(clip).num_frames
    out = tmp_path / "results.jsonl"
    proc = edgevid("run", "-s", str(clip), "-m", str(tiny_onnx), "--every", "2", "--top-k", "2",
                   "--threshold", "0.99", "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # --json FILE: nothing on stdout
    assert f"{n} frames read, 0 dropped" in proc.stderr and "inference" in proc.stderr
    rows = read_records(out, "result")
    assert len(rows) == len(range(7, n, 2))
    for row in rows:
        assert set(row) == RESULT_KEYS
        assert row["stream"] == 0 and row["source"] == str(clip)
        assert isinstance(row["frame"], int) and isinstance(row["timestamp"], float)
        assert row["label"] == "uncertain" and 0 < row["score"] < 0.99  # 5 classes, untrained
        assert [set(t) for t in row["top_k"]] == [{"label", "score"}] * 2
        assert row["top_k"][0]["score"] >= row["top_k"][1]["score"]
        assert set(row["latency_ms"]) == {"decode", "preprocess", "inference", "total"}
        assert row["latency_ms"]["total"] >= row["latency_ms"]["inference"] > 0


def test_run_annotated_output_is_readable(tiny_onnx, media_dir, tmp_path):
    src = media_dir / "carphone_pristine.mp4"
    out = tmp_path / "annotated.mp4"
    proc = edgevid("run", "-s", str(src), "-m", str(tiny_onnx), "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 15 and proc.stderr == ""
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height) == (120, 176, 144)
    original = list(iter_frames(src))
    annotated = list(iter_frames(out))
    band = slice(0, 20)  # the label band is drawn on black at the top
    assert annotated[60][band].mean() < original[60][band].mean() - 30
    assert np.abs(annotated[60][80:130].astype(int) - original[60][80:130]).mean() < 8  # kept
    strip = slice(133, 144)  # the segment timeline along the bottom (8% of the height)
    assert annotated[60][strip].mean() < original[60][strip].mean() - 20
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]  # no temp files left


@pytest.mark.parametrize(("width", "height"), [(80, 64), (176, 144), (1280, 720)])
def test_overlay_text_never_collides(width, height):
    """The label is never cut at the right edge; the fps goes right of it with a gap, or,
    on frames too narrow for both (the 80-pixel synthetic clips), is left out."""
    from edgevid.runtime.render import annotate

    frame = np.zeros((height, width, 3), np.uint8)
    fps_drawn = {}
    for label in ("MoveRight", "ThrowDiscus" * 12):
        plain = annotate(frame, label, 0.4)
        text_cols = np.flatnonzero((plain.min(axis=2) > 128).any(axis=0))  # the white text
        assert text_cols.min() > 0 and text_cols.max() < width - 2
        fps_cols = np.flatnonzero(
            (annotate(frame, label, 0.4, fps=191.6) != plain).any(axis=(0, 2))
        )
        assert fps_cols.size == 0 or fps_cols.min() > text_cols.max() + 6
        fps_drawn[label] = fps_cols.size > 0
    assert list(fps_drawn.values()) == [width > 80, False]


def test_run_several_sources_writes_one_video_each(tiny_onnx, media_dir, tmp_path):
    proc = edgevid("run", "-s", str(media_dir / "carphone_pristine.mp4"), "-s",
                   str(media_dir / "bikes.mp4"), "-m", str(tiny_onnx), "--max-frames", "24",
                   "-o", str(tmp_path / "out.avi"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    streams = [r["stream"] for r in read_records(proc.stdout, "result")]
    assert sorted(streams) == [0, 0, 0, 1, 1, 1]
    for i, (w, h) in enumerate([(176, 144), (640, 272)]):
        cap = cv2.VideoCapture(str(tmp_path / f"out_{i}.avi"))
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (w, h)
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
        cap.release()


def test_run_without_torch_or_onnx(tiny_onnx, media_dir):
    """The core install: edgevid run works when torch, transformers and onnx cannot import."""
    block = (
        "import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'transformers', 'onnx')]"
    )
    code = f"{block}; from edgevid.cli import main; main()"
    args = ["run", "-s", str(media_dir / "carphone_pristine.mp4"), "-m", str(tiny_onnx)]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 15


def test_runtime_imports_neither_torch_nor_transformers():
    code = (
        "import sys, edgevid.runtime, edgevid.cli.run\n"
        "from edgevid.runtime import Classifier, stream\n"
        "import edgevid.runtime.backends.onnxruntime, edgevid.runtime.backends.tensorrt\n"
        "import edgevid.runtime.render, edgevid.runtime.bench, edgevid.runtime.run\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'onnx', 'onnxscript', 'safetensors'))\n"
        "print(bad)\n"
        "assert 'onnxruntime' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("missing", ["missing.mp4: no such file"]),
        ("corrupt", ["corrupt.mp4: cannot be opened as a video"]),
        ("not-video", ["notes.txt: cannot be opened as a video"]),
        ("camera", ["/dev/video99: no such camera"]),
        ("metadata", ["bad.onnx", "does not match"]),
        ("model", ["nomodel.onnx: model file not found"]),
        ("smooth", ["--smooth 'median:3'"]),
    ],
)
def test_run_clear_errors(kind, needles, tiny_onnx, media_dir, tmp_path):
    source, model, extra = str(media_dir / "carphone_pristine.mp4"), str(tiny_onnx), []
    if kind == "missing":
        source = str(tmp_path / "missing.mp4")
    elif kind == "corrupt":
        (tmp_path / "corrupt.mp4").write_bytes((media_dir / "bikes.mp4").read_bytes()[5000:60000])
        source = str(tmp_path / "corrupt.mp4")
    elif kind == "not-video":
        (tmp_path / "notes.txt").write_text("hello\n")
        source = str(tmp_path / "notes.txt")
    elif kind == "camera":
        source = "/dev/video99"
    elif kind == "metadata":
        model = str(with_metadata(tiny_onnx, tmp_path / "bad.onnx", num_frames=16))
    elif kind == "model":
        model = str(tmp_path / "nomodel.onnx")
    elif kind == "smooth":
        extra = ["--smooth", "median:3"]
    proc = edgevid("run", "-s", source, "-m", model, "-o", str(tmp_path / "o.mp4"), *extra)
    assert_clear_error(proc, *needles)
    assert not (tmp_path / "o.mp4").exists()


def test_show_without_a_display_is_a_clear_error(tiny_onnx, media_dir):
    proc = edgevid("run", "-s", str(media_dir / "bikes.mp4"), "-m", str(tiny_onnx), "--show",
                   env={"DISPLAY": ""})  # fmt: skip
    assert_clear_error(proc, "--show")


def test_lost_stream_via_cli_is_a_clear_error(tiny_onnx, tmp_path):
    with MjpegServer(per_connection=30, max_connections=1, fps=200) as srv:
        proc = edgevid("run", "-s", srv.url, "-m", str(tiny_onnx), "--reconnect-timeout", "1",
                       "--timeout", "2", "--json", str(tmp_path / "r.jsonl"))  # fmt: skip
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert err[-1] == f"edgevid: error: {srv.url}: stream lost and not back after 1 s"
    m = re.search(r"(\d+) frames read, (\d+) dropped", proc.stderr)
    read, dropped = int(m.group(1)), int(m.group(2))
    assert read + dropped == 30  # the summary still comes, before the error
    # the JSON lines are a live log: every line written before the loss is there and whole
    inferences = int(re.search(r"(\d+) inferences", proc.stderr).group(1))
    log = tmp_path / "r.jsonl"  # (removed if the loss came before the first result)
    rows = read_records(log, "result") if log.exists() else []
    assert len(rows) == inferences and all(set(r) == RESULT_KEYS for r in rows)


def test_bench_reports_every_number(tiny_onnx, media_dir, tmp_path):
    out = tmp_path / "bench.json"
    proc = edgevid("bench", "-m", str(tiny_onnx), "-s", str(media_dir / "bikes.mp4"),
                   "--max-frames", "64", "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "tiny-prune8.onnx" in proc.stdout and "keeps up" in proc.stdout
    (row,) = json.loads(out.read_text())
    assert row["frames"] == 64 and row["inferences"] == 8 and row["every"] == 8
    assert row["e2e_fps"] > 0 and row["inference_ms_p50"] > 0 and row["overhead_ratio"] > 0
    assert row["peak_rss_mb"] > row["rss_start_mb"] > 0
    assert row["rss_budget_mb"] == pytest.approx(row["size_mb"] + 300, abs=0.1)
    assert set(row["stages_ms"]) == {"decode", "preprocess", "buffer", "inference"}
    bad = edgevid("bench", "-m", str(tiny_onnx), "-s", str(tmp_path / "none.mp4"))
    assert_clear_error(bad, "none.mp4: no such file")


def test_no_inference_on_an_unchanged_buffer(tiny_onnx, media_dir):
    """--every 1 with stride 4: a window only changes every 4th frame, so does inference."""
    s = Streamer(media_dir / "carphone_pristine.mp4", tiny_onnx, every=1, stride=4)
    frames = [r.frame for step in s.steps() for r in step.results]
    assert frames == list(range(28, 120, 4))  # 8 frames at stride 4: full at frame 28


def test_ctrl_c_ends_a_run_cleanly(tiny_onnx, media_dir, tmp_path):
    """Ctrl-C is how a camera run ends: summary, finished video, exit 0."""
    import signal

    out = tmp_path / "live.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevid", "run", "-s", str(media_dir / "bikes.mp4"),
         "-m", str(tiny_onnx), "--realtime", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=with_stop_signals,
    )  # fmt: skip
    (first,) = read_records(proc.stdout.readline(), "result")  # running: the first result is out
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert first["frame"] >= 7 and "Traceback" not in stderr  # 7 unless frames were dropped
    read = int(re.search(r"(\d+) frames read", stderr).group(1))
    assert 8 <= read < 250  # stopped early, paced at 25 fps
    assert read - 1 <= probe_video(out).num_frames <= read  # the interrupted step may be cut


def test_run_streams_writes_every_output(tiny_onnx, media_dir, tmp_path):
    from edgevid.runtime.run import run_streams

    seen = []
    s = Streamer(media_dir / "carphone_pristine.mp4", tiny_onnx, every=16)
    outcome = run_streams(s, output=tmp_path / "a.mp4", json_path=tmp_path / "r.jsonl",
                          on_result=seen.append)  # fmt: skip
    assert outcome.written == [tmp_path / "a.mp4", tmp_path / "r.jsonl"]
    assert not outcome.interrupted and outcome.stats.summary()["inferences"] == len(seen) == 8
    rows = read_records(tmp_path / "r.jsonl", "result")
    assert [r["frame"] for r in rows] == [r.frame for r in seen] == list(range(7, 120, 16))
    assert probe_video(tmp_path / "a.mp4").num_frames == 120
