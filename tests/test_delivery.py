"""Results leave the process as they happen, and a run ends cleanly on a stop signal.

Real `edgevid run` subprocesses on real clips: the JSON-lines log is read while the run
goes on, then the process gets SIGTERM / SIGHUP (as `docker stop` and a closed terminal
send them) and must end like Ctrl-C: summary, complete log, finished video, no temp file.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from edgevid.core.video import probe_video
from tests.conftest import read_records, with_stop_signals
from tests.test_sources import MjpegServer
from tests.test_stream import RESULT_KEYS, assert_clear_error, edgevid

onnx = pytest.importorskip("onnx", reason="test graphs need the export extra (onnx)")
from tests.test_runtime_classifier import with_metadata  # noqa: E402

EVENT_KEYS = {
    "type", "schema", "time", "unix", "id", "stream", "source", "label", "start", "end", "score",
    "state",
}  # fmt: skip


def complete_lines(path: Path) -> list[dict]:
    """The whole lines of a JSON-lines file (a line being written is not one yet), each
    checked against the shipped schema of its type."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return read_records(text[: text.rfind("\n") + 1])


def wait_for_lines(path: Path, proc: subprocess.Popen, n: int = 1, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = complete_lines(path)
        if len(rows) >= n:
            return rows
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    raise AssertionError(f"no JSON line in {path} after {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_mid_stream_ends_like_ctrl_c(sig, tiny_onnx, media_dir, tmp_path):
    """The must-show: a line is readable while the run goes on; then the signal, and every
    output is complete. Exit code 0 (documented): a stop is how a live run ends."""
    log, events, video = tmp_path / "r.jsonl", tmp_path / "ev.jsonl", tmp_path / "live.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevid", "run", "-s", str(media_dir / "bikes.mp4"),
         "-m", str(tiny_onnx), "--realtime", "--json", str(log), "--events", str(events),
         "-o", str(video)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=with_stop_signals,
    )  # fmt: skip
    first = wait_for_lines(log, proc)  # flushed per result: readable during the run
    assert proc.poll() is None and set(first[0]) == RESULT_KEYS
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout == "" and "Traceback" not in stderr
    m = re.search(r"(\d+) frames read, (\d+) dropped, (\d+) inferences", stderr)
    read, inferences = int(m.group(1)), int(m.group(3))
    assert 8 <= read < 250  # stopped early (250 frames at 25 fps take 10 s)
    assert f"stopped by {sig.name}" in stderr and "segments:" in stderr
    text = log.read_text(encoding="utf-8")
    assert text.endswith("\n")
    rows = read_records(text, "result")
    assert len(rows) == inferences and all(set(r) == RESULT_KEYS for r in rows)
    assert [r["frame"] for r in rows] == sorted(r["frame"] for r in rows)
    assert rows[0]["model"] == "tiny-prune8.onnx" and rows[0]["unix"] > 1.7e9  # wall clock
    iso = datetime.fromisoformat(rows[0]["time"].replace("Z", "+00:00"))  # ISO-8601 UTC
    assert iso.timestamp() == pytest.approx(rows[0]["unix"], abs=1e-3)
    assert all(set(e) == EVENT_KEYS for e in complete_lines(events))
    assert probe_video(video).num_frames == read  # every frame read is in the video
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.jsonl", "live.mp4", "r.jsonl"]


def test_output_in_parts_each_published_when_complete(tiny_onnx, media_dir, tmp_path):
    """--output-segment-s: 120 frames at 29.97 fps in 1 s parts -> 30 + 30 + 30 + 30."""
    out = tmp_path / "cam.mp4"
    proc = edgevid("run", "-s", str(media_dir / "carphone_pristine.mp4"), "-m", str(tiny_onnx),
                   "-o", str(out), "--output-segment-s", "1",
                   "--json", str(tmp_path / "r.jsonl"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    parts = sorted(tmp_path.glob("cam-*.mp4"))
    assert [p.name for p in parts] == [f"cam-{k:04d}.mp4" for k in range(4)]
    assert [probe_video(p).num_frames for p in parts] == [30, 30, 30, 30]
    assert all(f"wrote {p}" in proc.stderr for p in parts)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_json_keeps_non_ascii_labels_readable(tiny_onnx, media_dir, tmp_path):
    labels = ["Départ", "Überholen", "跑步", "MoveRight", "MoveUp"]
    model = with_metadata(tiny_onnx, tmp_path / "intl.onnx", labels=labels)
    proc = edgevid("run", "-s", str(media_dir / "carphone_pristine.mp4"), "-m", str(model),
                   "--max-frames", "16", "--top-k", "5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and "\\u" not in proc.stdout
    for word in labels[:3]:
        assert word in lines[0]
    assert {t["label"] for t in read_records(lines[0], "result")[0]["top_k"]} == set(labels)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--publish", "mqtt://127.0.0.1:{port}/edge"], ["mqtt://127.0.0.1:{port}/edge",
                                                         "cannot connect to the MQTT broker"]),
        (["--publish", "http://broker/topic"], ["--publish 'http://broker/topic'",
                                                 "only mqtt://"]),
        (["--publish", "mqtt://broker:99999/t"], ["bad port"]),
        (["--publish", "mqtt://broker:1883/"], ["missing topic"]),
        (["--publish", "mqtt://broker/a/#"], ["wildcards"]),
        (["--events", "{tmp}/file.txt/ev.jsonl"], ["--events", "ev.jsonl: cannot write"]),
        (["--json", "{tmp}/file.txt/r.jsonl"], ["--json", "r.jsonl: cannot write"]),
    ],
)  # fmt: skip
def test_bad_outputs_fail_before_any_frame(extra, needles, tiny_onnx, tmp_path):
    """One clear line, non-zero exit, and the live source was never even connected to."""
    (tmp_path / "file.txt").write_text("a file, not a folder\n")
    port = free_port()  # nothing listens there
    fill = {"port": port, "tmp": tmp_path}
    extra = [a.format(**fill) for a in extra]
    with MjpegServer(fps=200) as srv:
        proc = edgevid("run", "-s", srv.url, "-m", str(tiny_onnx), "-o",
                       str(tmp_path / "o.mp4"), *extra)  # fmt: skip
        connections = srv.connections
    assert_clear_error(proc, *(n.format(**fill) for n in needles))
    assert connections == 0 and not (tmp_path / "o.mp4").exists()


def test_events_log_pairs_every_open_with_its_close(tiny_onnx, tmp_path):
    """`--events -` on stdout beside the results: each segment opens once and closes once,
    in time order, and the summary lists the same segments."""
    from edgevid.train.synth import make_untrimmed_video

    make_untrimmed_video(tmp_path / "u.mp4", classes=3, segments=3, seed=0)
    proc = edgevid("run", "-s", str(tmp_path / "u.mp4"), "-m", str(tiny_onnx), "--json",
                   str(tmp_path / "r.jsonl"), "--events", "-", "--segment-threshold", "0.2",
                   "--segment-release", "0.15", "--segment-min-s", "0.3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = read_records(proc.stdout, "segment")
    assert events and all(set(e) == EVENT_KEYS for e in events)
    opened = [e for e in events if e["state"] == "open"]
    closed = [e for e in events if e["state"] == "closed"]
    assert [(e["label"], e["start"]) for e in opened] == [(e["label"], e["start"]) for e in closed]
    assert [e["id"] for e in opened] == [e["id"] for e in closed]  # the id pairs them
    assert len({e["id"] for e in opened}) == len(opened)
    assert all(a["end"] <= b["start"] for a, b in zip(closed, closed[1:], strict=False))
    assert f"segments: {len(closed)}" in proc.stderr
