"""Never destroy a file edgevid did not create: a fault matrix with real processes.

Every case runs ``python -m edgevid`` on real files (real clips, the tiny ONNX model, real
FIFOs, a real full tmpfs) and asserts the exit code, one error line and no traceback, the
exact bytes of every file that existed before, and no temporary file left behind.
See docs/operations.md, "Files edgevid writes".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, read_records, with_stop_signals

RUN = ["run", "--device", "cpu", "-q"]


def edgevid(*args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "edgevid", *map(str, args)], capture_output=True, text=True,
        timeout=timeout, env=env, cwd=kw.pop("cwd", ROOT), **kw,
    )  # fmt: skip


def spawn(*args, cwd: Path = ROOT) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "edgevid", *map(str, args)], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=with_stop_signals,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``folder``: its kind and content hash (files) and mtime."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                               st.st_mtime_ns)  # fmt: skip
        else:
            out[str(p.relative_to(folder))] = (stat.filemode(st.st_mode)[0], st.st_mtime_ns)
    return out


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("edgevid: error")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], proc.stderr
    return lines[0]


@pytest.fixture
def work(tmp_path, media_dir, tiny_onnx) -> Path:
    """A folder with a clip, the model and its sidecar (copies: the test may not touch the
    session's), and two existing logs with a user's bytes in them."""
    shutil.copy(media_dir / "carphone_pristine.mp4", tmp_path / "clip.mp4")
    shutil.copy(tiny_onnx, tmp_path / "model.onnx")
    shutil.copy(tiny_onnx.with_suffix(".json"), tmp_path / "model.json")
    (tmp_path / "r.jsonl").write_text('{"a user": "line"}\n')
    (tmp_path / "ev.jsonl").write_text("not even json, but the user's\n")
    return tmp_path


# --- a run that fails before its first record leaves every file as it was --------------------
FAILED_STARTS = {  # what fails, as extra run arguments
    "model typo": ["-s", "clip.mp4", "-m", "modle.onnx"],
    "missing source": ["-s", "nope.mp4", "-m", "model.onnx"],
    "undecodable source": ["-s", "model.json", "-m", "model.onnx"],
    "unreachable broker": [
        "-s",
        "clip.mp4",
        "-m",
        "model.onnx",
        "--publish",
        "mqtt://127.0.0.1:9/edgevid",
    ],  # fmt: skip
}
LOGS = {  # which logs the run is given: existing ones, and one that does not exist yet
    "json": ["--json", "r.jsonl"],
    "events": ["--json", "-", "--events", "ev.jsonl"],
    "both+new": ["--json", "r.jsonl", "--events", "ev.jsonl", "-o", "new/out.mp4"],
}


@pytest.mark.parametrize("logs", LOGS)
@pytest.mark.parametrize("failure", FAILED_STARTS)
def test_failed_start_keeps_existing_logs_byte_identical(work, failure, logs):
    if failure == "unreachable broker":
        pytest.importorskip("paho.mqtt.client")
    before = snapshot(work)
    proc = edgevid(*RUN, *FAILED_STARTS[failure], *LOGS[logs], cwd=work)
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc)
    after = snapshot(work)
    after.pop("new", None)  # a folder made for an output may stay (empty)
    assert after == before
    assert not (work / "new" / "out.mp4").exists() and temps(work) == []


# --- an output that is an input, or another output, is refused before anything opens --------
OVERLAPS = [  # (arguments, what the line names); every file must stay byte-identical
    (["-s", "clip.mp4", "-m", "model.onnx", "--json", "clip.mp4"], "--source clip.mp4"),
    (["-s", "clip.mp4", "-m", "model.onnx", "--events", "clip.mp4"], "--source clip.mp4"),
    (["-s", "clip.mp4", "-m", "model.onnx", "-o", "clip.mp4"], "--source clip.mp4"),
    (["-s", "clip.mp4", "-m", "model.onnx", "--json", "./sub/../clip.mp4"], "--source"),
    (["-s", "clip.mp4", "-m", "model.onnx", "--json", "link.jsonl"], "--source clip.mp4"),
    (["-s", "clip.mp4", "-m", "model.onnx", "--json", "model.onnx"], "--model model.onnx"),
    (["-s", "clip.mp4", "-m", "model.onnx", "--json", "model.json"], "sidecar"),
    (["-s", "clip.mp4", "-m", "model.onnx", "-o", "model.onnx"], "--model model.onnx"),
    (["-s", "clip.mp4", "-m", "model.onnx", "--json", "model.backend.json"], "cache"),
    (["-s", "clip.mp4", "-m", "model.onnx", "--json", "r.jsonl", "-o", "r.jsonl"], "--json"),
    (
        ["-s", "clip.mp4", "-s", "clip_1.mp4", "-m", "model.onnx", "-o", "clip.mp4"],
        "--source clip_1.mp4",
    ),  # per-stream outputs clip_0.mp4, clip_1.mp4
    (
        ["-s", "out-0003.mp4", "-m", "model.onnx", "-o", "out.mp4", "--output-segment-s", "1"],
        "--source out-0003.mp4",
    ),  # a part of a video written in parts
]


@pytest.mark.parametrize(("args", "names"), OVERLAPS, ids=lambda v: " ".join(v) if
                         isinstance(v, list) else None)  # fmt: skip
def test_an_output_that_is_an_input_or_another_output_is_refused(work, args, names):
    (work / "sub").mkdir()
    (work / "link.jsonl").symlink_to("clip.mp4")
    for name in ("clip_1.mp4", "out-0003.mp4"):
        shutil.copy(work / "clip.mp4", work / name)
    (work / "model.backend.json").write_text("{}")
    before = snapshot(work)
    proc = edgevid(*RUN, *args, cwd=work)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc, "refusing to write over it", names)
    assert "model" not in line or "modle" not in line
    assert snapshot(work) == before and temps(work) == []


@pytest.mark.parametrize("target", ["clip.mp4", "model.onnx"])
def test_bench_json_over_its_video_or_a_model_is_refused(work, target):
    before = snapshot(work)
    proc = edgevid("bench", "-m", "model.onnx", "-s", "clip.mp4", "--json", target, cwd=work)
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc, "refusing to write over it", target)
    assert snapshot(work) == before


def test_json_equal_to_the_source_leaves_the_source_byte_identical(work):
    """The must-show: once truncated the clip and blamed it; now one line, clip untouched."""
    clip = (work / "clip.mp4").read_bytes()
    proc = edgevid(*RUN, "-s", "clip.mp4", "-m", "model.onnx", "--json", "clip.mp4", cwd=work)
    assert proc.returncode == 2
    one_error_line(proc, "--json clip.mp4 is also --source clip.mp4")
    assert (work / "clip.mp4").read_bytes() == clip


# --- the overwrite policy: logs grow, artefacts are replaced whole ---------------------------
def test_an_existing_log_is_appended_to_never_truncated(work):
    old_r, old_ev = (work / "r.jsonl").read_bytes(), (work / "ev.jsonl").read_bytes()
    for _ in range(2):  # a restarted run continues the log
        proc = edgevid(*RUN, "-s", "clip.mp4", "-m", "model.onnx", "--json", "r.jsonl",
                       "--events", "ev.jsonl", cwd=work)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    data = (work / "r.jsonl").read_bytes()
    assert data.startswith(old_r) and (work / "ev.jsonl").read_bytes().startswith(old_ev)
    rows = read_records(data[len(old_r) :].decode(), "result")  # whole, valid records
    assert len(rows) == 2 * 15 and all(r["label"] for r in rows)
    assert temps(work) == []


def test_an_existing_video_is_replaced_whole(work):
    from edgevid.core.video import probe_video

    (work / "out.mp4").write_bytes(b"an old video")
    proc = edgevid(*RUN, "-s", "clip.mp4", "-m", "model.onnx", "-o", "out.mp4", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert probe_video(work / "out.mp4").num_frames == 120 and temps(work) == []


# --- FIFOs and devices are written in place, never unlinked or replaced -----------------------
class FifoReader:
    """Reads a FIFO in a thread; ``stall`` makes it stop reading (and holds it open)."""

    def __init__(self, path: Path, stall: bool = False) -> None:
        self.path, self.stall, self.data = path, stall, b""
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        self.fd = fd
        with contextlib.suppress(OSError):  # the smallest pipe: fills after a few lines
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)
        self.opened.set()
        if self.stall:
            return  # open, never read: the writer blocks once the pipe is full
        while chunk := os.read(fd, 65536):
            self.data += chunk
        os.close(fd)


def test_json_to_a_fifo_is_written_and_the_fifo_stays(work):
    fifo = work / "results.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    proc = edgevid(*RUN, "-s", "clip.mp4", "-m", "model.onnx", "--json", fifo, cwd=work)
    reader.thread.join(10)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = read_records(reader.data.decode(), "result")
    assert len(rows) == 15 and all(r["label"] for r in rows)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and temps(work) == []


@pytest.mark.parametrize("model", ["model.onnx", "modle.onnx"], ids=["run", "failed start"])
def test_logs_to_a_device_are_written_and_the_device_stays(work, model):
    dev = Path("/dev/null")
    proc = edgevid(*RUN, "-s", "clip.mp4", "-m", model, "--json", dev, "--events", dev,
                   cwd=work)  # fmt: skip
    assert proc.returncode == (0 if model == "model.onnx" else 2), proc.stderr
    assert "Traceback" not in proc.stderr
    assert stat.S_ISCHR(dev.stat().st_mode)  # opened, written, never unlinked or replaced


def test_a_video_to_a_fifo_is_refused_and_the_fifo_stays(work):
    fifo = work / "video.fifo"
    os.mkfifo(fifo)
    before = snapshot(work)
    proc = edgevid(*RUN, "-s", "clip.mp4", "-m", "model.onnx", "-o", fifo, "--json", "-",
                   cwd=work)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc, "video.fifo: not a regular file")
    assert snapshot(work) == before and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_bench_json_to_a_fifo_is_written_in_place(work):
    fifo = work / "bench.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    proc = edgevid("bench", "-m", "model.onnx", "-s", "clip.mp4", "--max-frames", "16",
                   "--device", "cpu", "--json", fifo, cwd=work, timeout=300)  # fmt: skip
    reader.thread.join(10)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(reader.data)[0]["model"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and temps(work) == []


# --- a full disk: a line is written whole or not at all, and the error names the file -------
@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB tmpfs (root only; else skipped with the reason)."""
    where = tmp_path / "small"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                       capture_output=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or 'not root'})")
    yield where
    subprocess.run(["umount", "-l", str(where)])


@pytest.mark.parametrize("existing", [False, True], ids=["new log", "existing log"])
def test_full_disk_cuts_the_log_back_to_its_last_whole_line(work, media_dir, small_disk,
                                                            existing):  # fmt: skip
    log = small_disk / "r.jsonl"
    old = b'{"kept": true}\n' if existing else b""
    if existing:
        log.write_bytes(old)
    proc = edgevid(*RUN, "-s", media_dir / "bikes.mp4", "-m", "model.onnx", "--every", "1",
                   "--json", log, cwd=work)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    one_error_line(proc, f"{log}: No space left on device")
    data = log.read_bytes()
    assert data.startswith(old) and data.endswith(b"\n") and len(data) > 32 * 1024
    assert all(json.loads(line) for line in data.decode().splitlines())
    assert temps(small_disk) == []


def test_full_disk_publishes_no_video_and_leaves_no_temp(work, media_dir, small_disk):
    proc = edgevid(*RUN, "-s", media_dir / "bikes.mp4", "-m", "model.onnx", "--json", "-",
                   "-o", small_disk / "out.mp4", cwd=work)  # fmt: skip
    assert proc.returncode in (1, 2), proc.stderr
    one_error_line(proc, "out.mp4")
    assert not (small_disk / "out.mp4").exists() and temps(small_disk) == []


# --- temporary files of a killed run are removed at the next start, and only those ---------
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("segment_s", [None, "60"], ids=["one video", "in parts"])
def test_a_killed_runs_temp_video_is_removed_at_the_next_start(work, segment_s):
    gone = dead_pid()
    name = "out.mp4" if segment_s is None else "out-0007.mp4"
    left = work / f".{name}.edgevid-{gone}.abcd_123.mp4"  # a killed run's, by its name
    keep = {  # not edgevid's, or of a process that is alive: never touched
        work / ".out.mp4.user-notes": b"mine",
        work / f".out.mp4.edgevid-{os.getpid()}.zzzz_999.mp4": b"a running writer's",
        work / f".other.mp4.edgevid-{gone}.abcd_123.mp4": b"another output's",
    }
    left.write_bytes(b"half a video")
    for p, data in keep.items():
        p.write_bytes(data)
    extra = ["--output-segment-s", segment_s] if segment_s else []
    proc = edgevid(*RUN, "-s", "clip.mp4", "-m", "model.onnx", "-o", "out.mp4", *extra,
                   cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not left.exists()
    assert {p: p.read_bytes() for p in keep} == keep


@pytest.mark.slow  # a real run killed, then a second run: ~10 s
def test_sigkill_mid_run_then_a_restart_leaves_no_temp(work, media_dir):
    args = [*RUN, "-s", media_dir / "bikes.mp4", "-m", "model.onnx", "--realtime",
            "--json", "r.jsonl", "-o", "out.mp4"]  # fmt: skip
    old = (work / "r.jsonl").read_bytes()
    proc = spawn(*args, cwd=work)
    deadline = time.monotonic() + 60
    while not list(work.glob(".out.mp4.edgevid-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(work.glob(".out.mp4.edgevid-*")), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not (work / "out.mp4").exists()
    again = edgevid(*[a for a in args if a != "--realtime"], cwd=work)
    assert again.returncode == 0, again.stderr
    assert temps(work) == [] and (work / "out.mp4").is_file()
    assert (work / "r.jsonl").read_bytes().startswith(old)


@pytest.mark.parametrize("keep", [1.0, 0.9, 0.5, 0.0], ids=["whole", "90%", "half", "empty"])
def test_a_written_mp4_is_checked_from_its_index(media_dir, tmp_path, keep):
    """check_written reads an MP4's frame count from its index, in pure Python (an FFmpeg
    open would wait on the lock a reconnecting capture holds): a cut file is refused."""
    from edgevid.core.video import check_written, mp4_sample_count
    from edgevid.errors import VideoError

    data = (media_dir / "bikes.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    if keep == 1.0:
        assert mp4_sample_count(cut) == 250
        check_written(cut, 250)
    else:
        assert mp4_sample_count(cut) == -1
        with pytest.raises(VideoError, match="cut.mp4: the video writer failed"):
            check_written(cut, 1)
