"""The engine cache on real files, real processes, real locks, real signals, a real read-only
mount. TensorRT is absent here: the build is a stand-in function given through the cache's
``build`` parameter (it writes an engine and a sidecar as the real build does)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgevid.errors import ModelError
from edgevid.runtime.backends import engine_cache
from edgevid.runtime.backends.engine_cache import (
    CACHE_DIRNAME,
    CACHE_ENV,
    BuildStep,
    Entry,
    cache_dir,
    evict,
    get_or_build,
)
from tests.conftest import ROOT, with_stop_signals
from tests.engine_standins import fake_build

DIGEST = "0123456789abcdef"


def step(key: dict, **kwargs) -> BuildStep:
    return BuildStep("tests.engine_standins:fake_build", {"key": key, **kwargs})


FAILING = BuildStep("tests.engine_standins:failing_build", {})

ASK = """
import json, signal, sys
from pathlib import Path
from edgevid.runtime.backends.engine_cache import BuildStep, get_or_build

def stop(signum, frame):  # what edgevid's CLI does with SIGTERM
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)
key = {{"graph_sha256": "a" * 64}}
build = BuildStep("tests.engine_standins:fake_build",
                  {{"key": key, "seconds": {seconds}, "log": {log!r}}})
log = lambda line: print(line, file=sys.stderr, flush=True)
entry, built = get_or_build(Path({folder!r}), "prune4", key, {digest!r}, build, log=log)
print(json.dumps([str(entry.engine), built]))
"""


def asker(tmp_path: Path, seconds: float) -> list[str]:
    code = ASK.format(log=str(tmp_path / "builds.log"), seconds=seconds,
                      folder=str(tmp_path / "cache"), digest=DIGEST)  # fmt: skip
    return [sys.executable, "-c", code]


def builds(tmp_path: Path) -> list[str]:
    log = tmp_path / "builds.log"
    return log.read_text().split() if log.exists() else []


def wait_for(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_two_processes_asking_for_one_engine_build_it_once(tmp_path):
    cmd = asker(tmp_path, seconds=2.0)
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    wait_for(lambda: builds(tmp_path))  # the first one is building now
    second = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    engine1, built1 = json.loads(out1)
    engine2, built2 = json.loads(out2)
    assert len(builds(tmp_path)) == 1  # one build, in one child process
    assert (built1, built2) == (True, False) and engine1 == engine2
    assert "another process is building prune4" in err2  # it waited on the lock
    entry = Path(engine1).parent
    assert entry.name == f"prune4-{DIGEST}" and Path(engine1).read_bytes() == b"e" * 64
    assert not list((tmp_path / "cache").glob(engine_cache.STAGING + "*"))


def test_sigterm_stops_a_build_within_2_s_leaving_nothing(tmp_path):
    proc = subprocess.Popen(asker(tmp_path, seconds=120), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=with_stop_signals)  # fmt: skip
    wait_for(lambda: builds(tmp_path))
    child = int(builds(tmp_path)[0])  # the build's own process
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode != 0
    assert not Path(f"/proc/{child}").exists()  # the build was stopped, not orphaned
    cache = tmp_path / "cache"
    left = sorted(p.name for p in cache.iterdir())
    assert left == [f".prune4-{DIGEST}.lock"]  # no engine, no staging folder, no entry


def test_other_keys_coexist_and_a_hit_does_not_build(tmp_path):
    folder = tmp_path / "cache"
    a, b = {"graph_sha256": "a"}, {"graph_sha256": "b"}
    ea, built_a = get_or_build(folder, "prune4", a, "a" * 16, step(a))
    eb, built_b = get_or_build(folder, "prune4", b, "b" * 16, step(b))
    assert built_a and built_b and ea.engine.is_file() and eb.engine.is_file()
    again, built = get_or_build(folder, "prune4", a, "a" * 16, FAILING)  # cached: no build
    assert again == ea and not built and eb.engine.is_file()


def test_an_entry_recording_another_key_is_rebuilt(tmp_path):
    folder = tmp_path / "cache"
    key, other = {"graph_sha256": "a"}, {"graph_sha256": "copied-from-elsewhere"}
    entry = Entry(folder / f"prune4-{DIGEST}", "prune4")
    entry.folder.mkdir(parents=True)
    fake_build(entry.engine, key=other)
    got, built = get_or_build(folder, "prune4", key, DIGEST, step(key))
    assert built and engine_cache.recorded_key(got) == key


def test_a_failed_build_or_a_refused_engine_publishes_nothing(tmp_path):
    folder = tmp_path / "cache"
    with pytest.raises(ModelError, match="cannot parse m.onnx: unsupported op"):
        get_or_build(folder, "prune4", {"k": 1}, DIGEST, FAILING)

    def refuse(engine: Path) -> None:
        assert engine.is_file()  # the staged engine is checked before it is published
        raise ModelError("m.onnx: the fp16 TensorRT engine is refused: cosine 0.5")

    key = {"k": 1}
    with pytest.raises(ModelError, match="refused"):
        get_or_build(folder, "prune4", key, DIGEST, step(key), check=refuse)
    assert sorted(p.name for p in folder.iterdir()) == [f".prune4-{DIGEST}.lock"]
    crash = BuildStep("tests.engine_standins:crashing_build", {})
    with pytest.raises(ModelError, match="^the engine build failed: RuntimeError: pybind11"):
        get_or_build(folder, "prune4", key, DIGEST, crash)


def test_lru_removal_keeps_the_newest_the_locked_and_what_is_not_ours(tmp_path):
    import fcntl

    folder = tmp_path / "cache"
    made = []
    for i, name in enumerate("abcd"):
        key = {"graph_sha256": name}
        entry, _ = get_or_build(folder, "m", key, name * 16, step(key, size=1000))
        os.utime(entry.folder, (1000 + i, 1000 + i))  # a oldest ... d newest
        made.append(entry)
    foreign = folder / "notes-0123456789abcdef"  # looks like an entry, is not edgevid's
    foreign.mkdir()
    (foreign / "big.bin").write_bytes(b"x" * 100_000)
    fd = os.open(folder / f".{made[1].folder.name}.lock", os.O_RDWR)  # b: in use elsewhere
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        per_entry = sum(f.stat().st_size for f in made[0].folder.iterdir())
        removed = evict(folder, cap=2 * per_entry, keep=made[3].folder)
    finally:
        os.close(fd)
    assert removed == [made[0].folder, made[2].folder]  # a, then c (b is locked)
    assert made[1].folder.is_dir() and made[3].folder.is_dir() and foreign.is_dir()


@contextlib.contextmanager
def read_only_folder(where: Path):
    """A real read-only mount at ``where`` (tmpfs, filled, then remounted ro); root only."""
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)])


def test_a_read_only_model_folder_uses_the_fallback_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    writable = tmp_path / "models" / "prune4.onnx"
    assert cache_dir(writable) == tmp_path / "models" / CACHE_DIRNAME  # beside the model
    with read_only_folder(tmp_path / "ro") as ro:
        model = ro / "prune4.onnx"
        model.write_bytes(b"graph")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        with pytest.raises(OSError):  # really read-only, for root too
            (ro / "probe").write_bytes(b"")
        lines: list[str] = []
        folder = cache_dir(model, lines.append)
        assert folder == tmp_path / "xdg" / "edgevid" / "engines"
        assert lines == [f"{ro} cannot be written: engines are cached in {folder} "
                         f"(set {CACHE_ENV} to choose)"]  # fmt: skip
        key = {"graph_sha256": "a"}
        entry, built = get_or_build(folder, "prune4", key, DIGEST, step(key))
        assert built and entry.engine.is_file() and sorted(os.listdir(ro)) == ["prune4.onnx"]
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "engines"))
    assert cache_dir(writable) == tmp_path / "engines"  # the environment wins


def test_cache_size_cap_from_the_environment(monkeypatch):
    monkeypatch.setenv(engine_cache.CAP_ENV, "512")
    assert engine_cache.cap_bytes() == 512 << 20
    monkeypatch.setenv(engine_cache.CAP_ENV, "lots")
    with pytest.raises(ModelError, match="in MB"):
        engine_cache.cap_bytes()
