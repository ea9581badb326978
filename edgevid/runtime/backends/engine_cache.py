"""The engine cache: one entry per key, built once, published whole, found again.

    entry, built = get_or_build(folder, "prune4", key, digest, BuildStep("pkg.mod:fn", {...}))
    entry.engine, entry.sidecar       # <folder>/prune4-<digest>/prune4.engine (+ .json)

- **One entry per key.** ``<stem>-<digest>/`` holds the engine and its ``.json`` sidecar,
  which records the key. Entries of other keys are never removed for being other keys: two
  folders each holding a ``prune4.onnx``, one ``--precision fp32`` run, another TensorRT
  version all coexist.
- **Built once.** An exclusive ``fcntl`` lock on ``.<stem>-<digest>.lock`` is held while
  building; a second process asking for the same key waits on it, then finds the entry.
- **Published whole.** The build writes into ``.building-<pid>-*/`` and the folder is renamed
  onto the entry in one step: a reader sees no entry or the engine with its sidecar.
  ``check`` (the parity test) runs on the staged engine first: a refused engine is never
  published.
- **Stoppable.** The build runs in a child Python process (``run_in_child``, JSON in, one
  line out: nothing pickled, the caller's main module never re-run): SIGTERM or Ctrl-C in
  the parent ends it within 2 s, well inside ``docker stop``'s 10, and the staging folder
  goes away with it.
- **Bounded.** Over ``EDGEVID_ENGINE_CACHE_MB`` (default 8192) the least recently used
  entries go, oldest first; only edgevid's entries (a sidecar with a key), never the one in
  use, never one locked by another process.
- **Where.** ``EDGEVID_ENGINE_CACHE``, else ``<model folder>/.engine-cache`` when that
  folder can be written, else the user cache folder (``$XDG_CACHE_HOME/edgevid/engines``,
  default ``~/.cache/edgevid/engines``): a read-only model mount costs one build, once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgevid.core.schema import load_json
from edgevid.errors import EdgevidError, ModelError

CACHE_ENV = "EDGEVID_ENGINE_CACHE"  # cache folder for every model
CAP_ENV = "EDGEVID_ENGINE_CACHE_MB"  # size cap of a cache folder
DEFAULT_CAP_MB = 8192
CACHE_DIRNAME = ".engine-cache"  # beside the model, where that folder can be written
STAGING = ".building-"  # + "<pid>-<random>": a build in progress
STOP_S = 2.0  # a stopped build's child gets this long after SIGTERM, then SIGKILL


@dataclass(frozen=True)
class Entry:
    folder: Path  # <cache>/<stem>-<digest>
    stem: str

    @property
    def engine(self) -> Path:
        return self.folder / f"{self.stem}.engine"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.stem}.json"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgevid" / "engines"


def writable(folder: Path) -> bool:
    """``folder`` (or the nearest existing parent) can take new files: ``os.access``
    answers for this process, a read-only mount included (EROFS even for root)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def cache_dir(model: Path, log: Callable[[str], None] = lambda line: None) -> Path:
    """The cache folder for ``model``: the environment's, beside the model, or the user's."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    beside = model.parent / CACHE_DIRNAME
    if writable(beside):
        return beside
    fallback = user_cache_dir()
    log(f"{model.parent} cannot be written: engines are cached in {fallback} "
        f"(set {CACHE_ENV} to choose)")  # fmt: skip
    return fallback


def cap_bytes() -> int:
    text = os.environ.get(CAP_ENV, str(DEFAULT_CAP_MB))
    try:
        return int(text) << 20
    except ValueError:
        raise ModelError(f"{CAP_ENV}={text!r}: give the cache size in MB") from None


def recorded_key(entry: Entry) -> dict | None:
    """The key an entry's sidecar records, or None (no sidecar, not edgevid's)."""
    try:
        meta = load_json(entry.sidecar, "engine metadata", ModelError)
        return meta["extra"]["engine"]["cache_key"]
    except (ModelError, KeyError, TypeError):
        return None


def lookup(folder: Path, stem: str, key: dict, digest: str) -> Entry | None:
    """The entry for ``key`` when it is complete and records ``key``; marked as used."""
    entry = Entry(folder / f"{stem}-{digest}", stem)
    if not entry.engine.is_file() or recorded_key(entry) != key:
        return None
    with contextlib.suppress(OSError):  # LRU order; a read-only cache just keeps its order
        os.utime(entry.folder)
    return entry


@contextlib.contextmanager
def locked(path: Path, log: Callable[[str], None], what: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path``, saying so when another process has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building {what}: waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class BuildStep:
    """A build run in a child process, named so the child can import it and given JSON
    arguments (nothing is pickled): ``function(engine_path, **kwargs)``, where ``target``
    is ``"module:function"``. The function writes the engine and its sidecar."""

    target: str  # "edgevid.runtime.backends.onnx_engine:build_entry"
    kwargs: dict  # JSON-serialisable


def get_or_build(
    folder: Path,
    stem: str,
    key: dict,
    digest: str,
    build: BuildStep,
    *,
    check: Callable[[Path], None] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[Entry, bool]:
    """The entry for ``key`` (and whether this call built it). ``build`` writes the engine
    and its sidecar (recording ``key``) in a child process; ``check`` judges the staged
    engine in this one before it is published."""
    found = lookup(folder, stem, key, digest)
    if found is not None:
        return found, False
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / f".{stem}-{digest}.lock", log, f"{stem} ({digest})"):
        found = lookup(folder, stem, key, digest)  # built while this process waited
        if found is not None:
            return found, False
        remove_dead_staging(folder)
        entry = Entry(folder / f"{stem}-{digest}", stem)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=folder))
        try:
            staged = Entry(staging, stem)
            run_in_child(build, staged.engine)
            if recorded_key(staged) != key:
                raise ModelError(f"the build of {stem} wrote no sidecar recording its key")
            if check is not None:
                check(staged.engine)
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the cache is shared
            if entry.folder.exists():  # a stale or half-copied entry of this key
                shutil.rmtree(entry.folder)
            os.replace(staging, entry.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    evict(folder, cap_bytes(), keep=entry.folder)
    return entry, True


_CHILD = "from edgevid.runtime.backends.engine_cache import child_main; child_main()"


def run_in_child(step: BuildStep, engine: Path) -> None:
    """Run ``step`` for ``engine`` in a child Python process. A stop signal in this process
    (SIGTERM as :class:`edgevid.cli.Terminated`, Ctrl-C) ends the child within ``STOP_S``
    seconds and propagates; an error in the child is raised here as the one line it
    reported. Its progress lines go to this process's stderr as they come."""
    request = {"path": sys.path, "target": step.target, "kwargs": step.kwargs,
               "engine": str(engine)}  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        message, _ = child.communicate(json.dumps(request))
    except BaseException:
        stop_child(child)
        raise
    if child.returncode != 0:
        line = message.strip().splitlines()[-1] if message.strip() else ""
        raise ModelError(line or f"the engine build ended with exit code {child.returncode}")


def stop_child(child: subprocess.Popen) -> None:
    child.terminate()  # SIGTERM: the child has the default handler, it dies at once
    try:
        child.wait(STOP_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def child_main() -> None:
    """The child's side of ``run_in_child``: read the request, run it, report one line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    request = json.loads(sys.stdin.read())
    sys.path[:0] = [p for p in request["path"] if p not in sys.path]
    module, _, name = request["target"].partition(":")
    function = getattr(importlib.import_module(module), name)
    try:
        function(Path(request["engine"]), **request["kwargs"])
    except EdgevidError as e:
        print(e, flush=True)
        raise SystemExit(2) from None
    except OSError as e:
        print(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "), flush=True)
        raise SystemExit(1) from None
    except Exception as e:  # noqa: BLE001 (an error raised inside TensorRT's bindings)
        print(f"the engine build failed: {type(e).__name__}: {e}", flush=True)
        raise SystemExit(1) from None


def remove_dead_staging(folder: Path) -> None:
    """Remove staging folders of builds whose process is gone (killed mid-build)."""
    for staging in folder.glob(f"{STAGING}*"):
        pid = staging.name[len(STAGING) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def entries(folder: Path) -> list[Entry]:
    """edgevid's entries in ``folder``: ``<stem>-<digest>/`` with a sidecar recording a key."""
    found = []
    for sub in folder.iterdir() if folder.is_dir() else ():
        stem, sep, digest = sub.name.rpartition("-")
        entry = Entry(sub, stem)
        if sep and len(digest) == 16 and sub.is_dir() and recorded_key(entry) is not None:
            found.append(entry)
    return found


def evict(folder: Path, cap: int, keep: Path) -> list[Path]:
    """Remove least recently used entries until ``folder`` holds at most ``cap`` bytes;
    ``keep`` and entries locked by another process stay. Returns what was removed."""
    sized = []  # (last used, bytes, entry); an entry removed meanwhile is left out
    for e in entries(folder):
        with contextlib.suppress(FileNotFoundError):
            used = e.folder.stat().st_mtime
            sized.append((used, sum(f.stat().st_size for f in e.folder.iterdir()), e))
    total = sum(size for _, size, _ in sized)
    removed = []
    for _, size, entry in sorted(sized, key=lambda row: row[0]):
        if total <= cap:
            break
        if entry.folder == keep:
            continue
        lock = folder / f".{entry.folder.name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # being built or replaced right now
        try:
            shutil.rmtree(entry.folder, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(entry.folder)
        total -= size
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
