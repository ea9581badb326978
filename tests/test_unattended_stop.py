"""Stoppable at every moment: a stop signal ends ``edgevid run`` within 2 s, exit 0, outputs
kept, whatever it is waiting on: a live UDP stream that stalled (inside FFmpeg's read, a
reopening, the backoff between two), or a log whose reader stopped reading (a FIFO, a pipe).

The stream is real: MPEG-TS (written by OpenCV's FFmpeg) sent over UDP on 127.0.0.1 by a
sender thread, read by ``edgevid run`` in a real process. See docs/operations.md, "Stopping".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, read_records, with_stop_signals

STOP_WITHIN_S = 2.0  # the promise: signal -> process gone
STOP_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"]


class UdpSender:
    """An MPEG-TS stream of 64x48 frames at 25 fps, sent over UDP to 127.0.0.1:``port`` by
    a thread, in a loop, until :meth:`stall` (the sender is gone: no more packets)."""

    def __init__(self, folder: Path) -> None:
        from edgevid.core._cv import cv2

        ts = folder / "stream.ts"
        writer = cv2.VideoWriter(str(ts), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), 25,
                                 (64, 48))  # fmt: skip
        for i in range(250):
            writer.write(np.full((48, 64, 3), (4 * i) % 256, np.uint8))
        writer.release()
        data = ts.read_bytes()
        self.packets = [data[i : i + 1316] for i in range(0, len(data), 1316)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a free port
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"udp://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        pause = 10.0 / len(self.packets)  # 250 frames in 10 s: real time
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not self._stop.is_set():
                for packet in self.packets:
                    if self._stop.wait(pause):
                        return
                    s.sendto(packet, ("127.0.0.1", self.port))

    def __enter__(self) -> UdpSender:
        self._thread.start()
        return self

    def stall(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __exit__(self, *exc) -> None:
        self.stall()


def spawn(*args, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "edgevid", *map(str, args)], cwd=cwd, env=env, text=True,
        stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=subprocess.PIPE,
        preexec_fn=with_stop_signals, **kw,
    )  # fmt: skip


def wait_until(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None and ready(), f"not ready: {proc.communicate()}"


def stop(proc: subprocess.Popen, sig: str) -> tuple[float, str]:
    """Send ``sig``; seconds until the process is gone, and its stderr."""
    t0 = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_WITHIN_S + 30)
    took = time.monotonic() - t0
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate()
    return took, err


def assert_kept(folder: Path, err: str, sig: str, frames_at_least: int = 1) -> None:
    """Exit 0 was checked by the caller; here: the summary, a whole video, whole log lines,
    no temporary file."""
    from edgevid.core.video import probe_video

    assert "Traceback" not in err and "edgevid: error" not in err, err
    assert f"stopped by {sig}" in err, err
    assert probe_video(folder / "out.mp4").num_frames >= frames_at_least
    rows = read_records(folder / "r.jsonl", "result")
    assert rows and all(r["label"] for r in rows)
    assert sorted(p.name for p in folder.glob(".*")) == []


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


# --- a stalled live stream ---------------------------------------------------------------------
PHASES = {  # seconds after the sender went away: where the run is waiting then
    "in the read": 0.3,  # FFmpeg's read, until its --timeout (1.5 s)
    "reopening": 2.5,  # an open attempt (FFmpeg waits --timeout for the stream)
    "backing off": 5.5,  # between attempts, or in one
}


@pytest.mark.slow  # a real stream, then a stall: 8-15 s each
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("sig", STOP_SIGNALS)
def test_stop_on_a_stalled_live_stream_within_2_s_outputs_kept(tiny_onnx, tmp_path, sig, phase):
    with UdpSender(tmp_path) as sender:
        proc = spawn("run", "-s", sender.url, "-m", tiny_onnx, "--device", "cpu", "--every", "2",
                     "--reconnect-timeout", "60", "--timeout", "1.5", "--json", "r.jsonl",
                     "-o", "out.mp4", cwd=tmp_path)  # fmt: skip
        wait_until(proc, lambda: lines_in(tmp_path / "r.jsonl") >= 2)
        sender.stall()
    time.sleep(PHASES[phase])
    took, err = stop(proc, sig)
    assert proc.returncode == 0, err
    assert took < STOP_WITHIN_S, f"{sig} {phase}: took {took:.2f} s"
    assert_kept(tmp_path, err, sig)


@pytest.mark.slow  # ~8 s
def test_a_stalled_stream_that_never_returns_still_fails_after_its_timeout(tiny_onnx, tmp_path):
    """The stop path does not swallow the error path: no signal, the stream is gone -> exit 2
    once --reconnect-timeout has passed, one line, the unfinished video discarded."""
    with UdpSender(tmp_path) as sender:
        proc = spawn("run", "-s", sender.url, "-m", tiny_onnx, "--device", "cpu",
                     "--reconnect-timeout", "2", "--timeout", "1", "--json", "r.jsonl",
                     "-o", "out.mp4", cwd=tmp_path)  # fmt: skip
        wait_until(proc, lambda: lines_in(tmp_path / "r.jsonl") >= 1)
        sender.stall()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "not back after 2 s" in err, err
    assert not (tmp_path / "out.mp4").exists()
    assert sorted(p.name for p in tmp_path.glob(".*")) == []


# --- a log whose reader stopped reading --------------------------------------------------------
def small_pipe(fd: int) -> None:
    with contextlib.suppress(OSError):  # the smallest pipe buffer: full after a few lines
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)


@pytest.mark.slow  # a realtime clip: ~8 s
@pytest.mark.parametrize("log", ["fifo", "stdout"])
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_stop_while_the_log_reader_stopped_reading(tiny_onnx, media_dir, tmp_path, sig, log):
    fifo = tmp_path / "r.fifo"
    args = ["run", "-s", media_dir / "bikes.mp4", "-m", tiny_onnx, "--device", "cpu",
            "--realtime", "--every", "1", "-o", "out.mp4"]  # fmt: skip
    held = []
    if log == "fifo":
        os.mkfifo(fifo)

        def hold() -> None:  # opens the FIFO and never reads it
            fd = os.open(fifo, os.O_RDONLY)
            small_pipe(fd)
            held.append(fd)

        threading.Thread(target=hold, daemon=True).start()
        proc = spawn(*args, "--json", fifo, "--events", "r.jsonl", cwd=tmp_path)
    else:
        proc = spawn(*args, "--json", "-", "--events", "r.jsonl", cwd=tmp_path,
                     stdout=subprocess.PIPE)  # fmt: skip  # never read until the end
        small_pipe(proc.stdout.fileno())
    (tmp_path / "r.jsonl").touch()
    wait_until(proc, lambda: any(tmp_path.glob(".out.mp4.*")))
    time.sleep(3.0)  # ~75 lines: the 4 KiB pipe is full, the writer blocked in write()
    took, err = stop(proc, sig)
    assert proc.returncode == 0, err
    assert took < STOP_WITHIN_S, f"{sig} {log}: took {took:.2f} s"
    assert "Traceback" not in err and f"stopped by {sig}" in err, err
    from edgevid.core.video import probe_video

    assert probe_video(tmp_path / "out.mp4").num_frames > 25
    assert sorted(p.name for p in tmp_path.glob(".*")) == []
    if log == "fifo":
        assert fifo.is_fifo()
    for fd in held:
        os.close(fd)


# --- a source that opens but gives no frame backs off, never spins -----------------------------
def silent_spec(opens: list[float]):
    """A live source whose every opening succeeds and then gives no frame (a real reader
    of an empty image folder, as a live stream)."""
    from edgevid.runtime.sources import ImageFolderReader, SourceSpec

    def open_() -> ImageFolderReader:
        opens.append(time.monotonic())
        return ImageFolderReader([], 25.0)

    return SourceSpec("silent://cam", "network", True, open_)


def test_a_source_that_opens_but_gives_no_frame_backs_off_then_fails():
    from edgevid.errors import SourceError
    from edgevid.runtime.capture import CaptureConfig, Source

    opens: list[float] = []
    t0 = time.monotonic()
    gone = pytest.raises(SourceError, match="not back after 1.5 s")
    with Source(silent_spec(opens), CaptureConfig(reconnect_s=1.5)) as src, gone:
        while src.get(timeout=0.1) is None and time.monotonic() - t0 < 10:
            pass
    took = time.monotonic() - t0
    assert 1.4 < took < 3.0, took
    assert 3 <= len(opens) <= 8, len(opens)  # 0.1, 0.2, 0.4, 0.8 s apart: not thousands
    gaps = np.diff(opens[1:])
    assert (gaps >= 0.09).all(), gaps


def test_a_stop_ends_the_backoff_at_once():
    from edgevid.runtime.capture import CaptureConfig, Source

    opens: list[float] = []
    src = Source(silent_spec(opens), CaptureConfig(reconnect_s=60)).start()
    time.sleep(2.5)  # the backoff is at its longest waits now
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 0.3
    assert not src._thread.is_alive()
    assert len(opens) <= 8, len(opens)


@pytest.mark.slow  # a real stream: ~6 s
def test_streamer_stop_ends_the_loop_while_no_frame_arrives(tiny_onnx, tmp_path):
    from edgevid.runtime.sources import SourceOptions
    from edgevid.runtime.streamer import StreamConfig, Streamer

    with UdpSender(tmp_path) as sender:
        config = StreamConfig(every=2, options=SourceOptions(timeout_s=1.0))
        streamer = Streamer([sender.url], str(tiny_onnx), config)
        steps = streamer.steps()
        while not next(steps).frames:  # the stream flows
            pass
        sender.stall()
        time.sleep(0.5)  # no frame arrives any more: the loop waits
        threading.Timer(0.3, streamer.stop).start()
        t0 = time.monotonic()
        rest = list(steps)
    assert time.monotonic() - t0 < 0.3 + 0.2 + 0.5, rest  # WAIT_S, and the 0.25 s join
    thread = streamer.lanes[0].source._thread
    thread.join(5)  # its FFmpeg read returns at its 1 s timeout and releases the reader
    assert not thread.is_alive()


# --- a broker that went away -------------------------------------------------------------------
@pytest.mark.slow  # a realtime clip and a broker: ~10 s
def test_stop_while_the_broker_is_away_within_2_s(tiny_onnx, media_dir, tmp_path):
    pytest.importorskip("paho.mqtt.client")
    from tests.test_mqtt import MOSQUITTO, Broker

    if MOSQUITTO is None:
        pytest.skip("needs the mosquitto broker (apt-get install mosquitto)")
    with Broker(tmp_path) as broker:
        topic = f"mqtt://127.0.0.1:{broker.port}/edgevid"
        proc = spawn("run", "-s", media_dir / "bikes.mp4", "-m", tiny_onnx, "--device", "cpu",
                     "--realtime", "--every", "1", "--json", "r.jsonl", "-o", "out.mp4",
                     "--publish", topic, cwd=tmp_path)  # fmt: skip
        wait_until(proc, lambda: lines_in(tmp_path / "r.jsonl") >= 5)
        broker.kill()  # messages now wait in the outbox, undelivered
        time.sleep(1.5)
        took, err = stop(proc, "SIGTERM")
    assert proc.returncode == 0, err
    assert took < STOP_WITHIN_S, f"took {took:.2f} s"
    assert_kept(tmp_path, err, "SIGTERM")
    assert "not delivered at exit" in err, err


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_stop_while_a_fifo_waits_for_its_reader(tiny_onnx, media_dir, tmp_path, sig):
    """Before the loop a stop is an interruption (exit 130): the FIFO stays, the other log
    this run created is removed, nothing else was made."""
    fifo = tmp_path / "r.fifo"
    os.mkfifo(fifo)
    proc = spawn("run", "-s", media_dir / "bikes.mp4", "-m", tiny_onnx, "--device", "cpu",
                 "--json", "r.jsonl", "--events", fifo, "-o", "out.mp4", cwd=tmp_path)  # fmt: skip
    wait_until(proc, lambda: (tmp_path / "r.jsonl").exists())  # --json opened: now --events
    time.sleep(0.5)
    took, err = stop(proc, sig)
    assert proc.returncode == 130, err
    assert took < STOP_WITHIN_S, f"took {took:.2f} s"
    assert "Traceback" not in err and err.strip() == "edgevid: interrupted", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.fifo"] and fifo.is_fifo()
