"""The reliability suite: bad input across the whole CLI, faults, and a short soak.

Every bad input must end in ONE line on stderr (``edgevid: error: ...``), a non-zero exit,
no traceback, and no output file where a good one was expected.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgevid.core._cv import cv2
from edgevid.core.video import write_video
from tests.conftest import read_records, with_stop_signals
from tests.test_sources import MjpegServer
from tests.test_stream import assert_clear_error, edgevid


# --- bad files, made once ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad(tmp_path_factory, media_dir) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "empty": d / "empty.mp4",
        "text": d / "notes.mp4",
        "truncated": d / "truncated.mp4",
        "zero_frames": d / "zero.avi",
        "one_frame": d / "one.mp4",
        "huge": d / "huge.avi",
        "not_onnx": d / "model.onnx",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("definitely not a video\n" * 50)
    files["truncated"].write_bytes((media_dir / "bikes.mp4").read_bytes()[:20_000])
    w = cv2.VideoWriter(str(files["zero_frames"]), cv2.VideoWriter_fourcc(*"MJPG"), 15, (64, 48))
    w.release()  # a container with a header and no frame
    write_video(files["one_frame"], np.full((1, 64, 80, 3), 90, np.uint8), fps=15)
    w = cv2.VideoWriter(str(files["huge"]), cv2.VideoWriter_fourcc(*"MJPG"), 1, (8400, 8400))
    w.write(np.zeros((8400, 8400, 3), np.uint8))  # 70 Mpixel: more than edgevid accepts
    w.release()
    files["not_onnx"].write_text("this is not a protobuf")
    return files


RUN_CASES = [  # (source key or literal, model key or None = tiny_onnx, extra args, fragment)
    ("empty", None, [], "empty file"),
    ("text", None, [], "cannot be opened as a video"),
    ("truncated", None, [], "truncated.mp4"),
    ("zero_frames", None, [], "no frame could be decoded"),
    ("huge", None, [], "too large"),
    ("", None, [], "empty source"),
    ("foo://bar", None, [], "unknown source scheme"),
    ("/dev/video99", None, [], "no such camera"),
    ("one_frame", "not_onnx", [], "not a valid ONNX model"),
    ("one_frame", None, ["--every", "0"], "--every"),
    ("one_frame", None, ["--threshold", "1.5"], "--threshold"),
    ("one_frame", None, ["--smooth", "ema:7"], "--smooth"),
]


@pytest.mark.parametrize(("source", "model", "extra", "fragment"), RUN_CASES)
def test_run_bad_input(bad, tiny_onnx, tmp_path, source, model, extra, fragment):
    src = str(bad.get(source, source))
    mdl = str(bad[model]) if model else str(tiny_onnx)
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    proc = edgevid("run", "-s", src, "-m", mdl, "-o", str(out), "--json", str(js), *extra)
    assert_clear_error(proc, fragment)
    assert not out.exists() and not js.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_one_frame_video_is_padded_to_one_result(bad, tiny_onnx, tmp_path):
    """Like a training clip shorter than T frames: the frame repeats; one result."""
    proc = edgevid("run", "-s", str(bad["one_frame"]), "-m", str(tiny_onnx),
                   "--json", str(tmp_path / "r.jsonl"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = read_records(tmp_path / "r.jsonl", "result")
    assert row["frame"] == 0


OTHER_CASES = [  # (argv with {placeholders}, fragment, output that must not appear)
    (["eval", "--model", "{not_onnx}", "--data", "{synth}"], "not a valid ONNX model", None),
    (["eval", "--model", "{tiny_onnx}", "--data", "{missing}"], "not found", None),
    (
        ["eval", "--model", "{tiny_onnx}", "--data", "{manifest}", "--split", "nope"],
        "'nope' is not one of",
        None,
    ),
    (["export", "--variant", "nope", "--out", "{out}"], "unknown variant", "{out}"),
    (["export", "--checkpoint", "{corrupt_ckpt}", "--out", "{out}"], "corrupt", "{out}"),
    (
        ["export", "--variant", "tiny-prune8", "--random-init", "--opset", "9", "--out", "{out}"],
        "--opset",
        "{out}",
    ),
    (
        [
            "export",
            "--variant",
            "tiny-prune8",
            "--random-init",
            "--batch",
            "0:1:2",
            "--out",
            "{out}",
        ],
        "--batch",
        "{out}",
    ),
    (
        [
            "export",
            "--variant",
            "tiny-prune8",
            "--random-init",
            "--int8",
            "static",
            "--out",
            "{out}",
        ],
        "--calib-data",
        "{out}",
    ),
    (
        ["train", "--variant", "tiny-prune8", "--data", "{missing}", "--out", "{out}"],
        "not found",
        "{out}",
    ),
    (
        [
            "train",
            "--variant",
            "tiny-prune8",
            "--data",
            "{synth}",
            "--epochs",
            "0",
            "--out",
            "{out}",
        ],
        "--epochs",
        "{out}",
    ),
    (
        ["train", "--variant", "nope", "--data", "{synth}", "--out", "{out}"],
        "unknown variant",
        "{out}",
    ),
    (
        ["prune", "--checkpoint", "{missing}", "--variant", "prune4", "--out", "{out}"],
        "not found",
        "{out}",
    ),
    (["data", "inspect", "{one_frame}"], "manifest is a binary file", None),
    (["data", "synth", "{out}", "--clips-per-class", "0"], "--clips-per-class", "{out}"),
    (["bogus-command"], "No such command", None),
]


@pytest.fixture(scope="module")
def corrupt_ckpt(tiny_checkpoint, tmp_path_factory) -> Path:
    import shutil

    d = tmp_path_factory.mktemp("corrupt") / "ckpt"
    shutil.copytree(tiny_checkpoint, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 3])  # truncated mid-tensor
    return d


# the cases whose subprocess gets as far as importing torch (~10 s each): full suite only
TORCH_CASES = {3, 4, 8, 10, 11}


@pytest.mark.parametrize(
    ("argv", "fragment", "absent"),
    [pytest.param(*c, marks=pytest.mark.slow if i in TORCH_CASES else ())
     for i, c in enumerate(OTHER_CASES)],
    ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(OTHER_CASES)],
)  # fmt: skip
def test_cli_bad_input(argv, fragment, absent, bad, tiny_onnx, synth_root, corrupt_ckpt, tmp_path):
    from edgevid.core.manifest import split_dataset

    manifest = split_dataset(synth_root, check=False).save(tmp_path / "manifest.json")
    names = {**{k: str(v) for k, v in bad.items()}, "tiny_onnx": str(tiny_onnx),
             "manifest": str(manifest), "synth": str(synth_root),
             "missing": str(tmp_path / "missing"), "out": str(tmp_path / "out"),
             "corrupt_ckpt": str(corrupt_ckpt)}  # fmt: skip
    proc = edgevid(*[a.format(**names) for a in argv])
    assert_clear_error(proc, fragment)
    if absent:
        assert not Path(absent.format(**names)).exists()


def test_wrong_channel_count_through_the_python_api(tiny_onnx):
    from edgevid.runtime import Classifier

    clf = Classifier(tiny_onnx)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        clf.predict(np.zeros((8, 32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        clf.predict(np.zeros((8, 32, 32), np.uint8))


def test_image_folder_with_gray_and_rgba_images_runs(tiny_onnx, tmp_path):
    """Channel counts other than 3 in image files are converted, not fatal."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(10):
        img = np.full((40, 40, 4 if i % 2 else 1), 20 * i, np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    proc = edgevid("run", "-s", str(folder), "-m", str(tiny_onnx), "--json", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert len(read_records(tmp_path / "r", "result")) >= 1


# --- faults -----------------------------------------------------------------------------------
@pytest.mark.slow  # measured 25-90 s on the 2-core reference CPU
def test_export_killed_mid_write_keeps_the_previous_artefact(tiny_checkpoint, tmp_path):
    out = tmp_path / "exports"
    args = [sys.executable, "-m", "edgevid", "export", "--checkpoint", str(tiny_checkpoint),
            "--out", str(out), "--no-verify"]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    graph = out / "tiny-prune8.onnx"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert graph.name in before
    # Again, killed (SIGKILL: no clean-up of any kind) as soon as it starts writing.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.name.startswith(".") for p in out.iterdir()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # every visible artefact is the previous, complete one
    # A later export succeeds and removes the dead run's staging folder.
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # a soak: ~20 s
def test_soak_looped_stream_memory_and_threads_stay_bounded(tiny_onnx):
    """~20 s of a live MJPEG stream on 127.0.0.1 through the full loop: RSS does not grow
    beyond a small bound once warm, and no capture thread outlives the run. Nothing here
    depends on the machine's speed: RSS is sampled by time, not by result count."""
    from edgevid.runtime.streamer import StreamConfig, Streamer

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            line = next(row for row in f if row.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    threads_before = set(threading.enumerate())
    samples: list[float] = []
    with MjpegServer(per_connection=10**6, fps=120) as srv:
        streamer = Streamer([srv.url], str(tiny_onnx), StreamConfig(every=2, stride=1))
        t0 = next_sample = time.monotonic()
        results = 0
        for step in streamer.steps():
            results += len(step.results)
            now = time.monotonic()
            if results and now >= next_sample:
                samples.append(rss_mb())
                next_sample = now + 0.5
            if now - t0 > 20:
                break
        streamer.close()
    assert results > 0 and len(samples) >= 8, (results, len(samples))  # the loop really ran
    warm = samples[len(samples) // 4 :]
    assert max(warm) - warm[0] < 25, f"RSS grew {warm[0]:.0f} -> {max(warm):.0f} MB"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and set(threading.enumerate()) - threads_before:
        time.sleep(0.05)
    assert not (set(threading.enumerate()) - threads_before), threading.enumerate()


@pytest.mark.slow  # subprocesses that import torch: ~17 s
def test_interrupt_exit_code_for_long_commands(synth_root, tmp_path):
    """Ctrl-C (SIGINT) during training is 'interrupted', exit 130, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevid", "train", "--variant", "tiny-scratch", "--data",
         str(synth_root), "--epochs", "50", "--out", str(tmp_path / "run"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=with_stop_signals,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "run").exists():
        time.sleep(0.05)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "edgevid: interrupted"
