"""Atomic file and folder writes: a reader sees the old artefact or the new one, never half.

Every artefact edgevid writes (manifests, checkpoints, ONNX graphs, engines, videos) goes
through here: write to a temporary name in the same folder, flush it to disk (fsync), let the
writer's own check confirm it is whole (a video is re-opened and its frames counted), then
``os.replace`` and fsync the folder. A writer that failed (a full disk, a read-only folder)
publishes nothing, and its OSError names the artefact's path, not the temporary one.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from edgevid.errors import EdgevidError

Check = Callable[[Path], None]  # raises (an EdgevidError) if the written file is not whole


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, suffix: str | None = None, check: Check | None = None
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    ``suffix`` defaults to ``path``'s own, so writers that pick a format from the
    extension (OpenCV, onnx) still work. Before the rename the file is fsynced and
    ``check(tmp)`` (if given) verifies it. On any exception the temporary file is removed
    and ``path`` is left untouched.
    """
    path = _through_link(Path(path))
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if path.exists() and not path.is_file():
            raise EdgevidError(
                f"{path}: not a regular file (a FIFO or a device); this output is written "
                "whole through a temporary file and renamed, which would replace it"
            )
        remove_dead_temps(path.parent, lambda name: name == path.name)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}{TEMP_MARK}{os.getpid()}.",
            suffix=path.suffix if suffix is None else suffix,
            dir=path.parent,
        )
        os.close(fd)
    tmp_path = Path(tmp)
    _MINE.add(tmp)
    try:
        with _naming(path, tmp_path):
            yield tmp_path
            _fsync(tmp_path)
            if check is not None:
                check(tmp_path)
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; artefacts are shared
            os.replace(tmp_path, path)
            _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)
        _MINE.discard(tmp)


TEMP_MARK = ".edgevid-"  # temporary files are .<name>.edgevid-<pid>.<8 random><suffix>
_TEMP = re.compile(r"\.(?P<name>.+)\.edgevid-(?P<pid>\d+)\.[A-Za-z0-9_]{8}.*")
_MINE: set[str] = set()  # this process's temporary files (in a container, pids repeat)


def remove_dead_temps(folder: Path, target: Callable[[str], bool]) -> list[Path]:
    """Remove the temporary files a killed edgevid left in ``folder`` for the outputs whose
    names ``target`` accepts: edgevid's own names only, of a process that is gone (or of
    this pid, when not this process's: a restarted container's PID 1). Nothing else."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.fullmatch(entry.name)
        if m is None or not target(m["name"]) or entry.path in _MINE:
            continue
        pid = int(m["pid"])
        if (pid != os.getpid() and pid_alive(pid)) or not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _through_link(path: Path) -> Path:
    """An output that is a symlink is written where it points (the link stays)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def is_special(path: str | os.PathLike) -> bool:
    """True for an existing FIFO, device or socket: written in place, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def refuse_overlaps(
    outputs: Iterable[tuple[str, str | os.PathLike]],
    inputs: Iterable[tuple[str, str | os.PathLike]],
) -> None:
    """Refuse, before anything is opened, an output that resolves (symlinks followed) to
    an input or to another output: ``(label, path)`` pairs, the labels as the user wrote
    them (``--json``, ``--source``). One path given twice as outputs of one label is one."""
    taken: dict[str, str] = {}
    for label, p in inputs:
        taken.setdefault(os.path.realpath(p), f"{label} {p}")
    for label, p in outputs:
        real = os.path.realpath(p)
        if real in taken and taken[real] != f"{label} {p}":
            raise EdgevidError(
                f"{label} {p} is also {taken[real]}: refusing to write over it "
                "(choose another path)"
            )
        taken[real] = f"{label} {p}"


@contextlib.contextmanager
def _naming(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """Re-raise an OSError about ``tmp`` (or about no file) as one about ``path``; an
    edgevid error that names ``tmp`` names ``path`` instead (the user never saw ``tmp``)."""
    try:
        yield
    except EdgevidError as e:
        if tmp is None or str(tmp) not in str(e) or len(e.args) != 1:
            raise
        renamed = copy.copy(e)
        renamed.args = (str(e).replace(str(tmp), str(path)),)
        raise renamed from e
    except OSError as e:
        if e.filename is None or (tmp is not None and str(tmp) in str(e.filename)):
            if e.errno is None:
                raise OSError(errno.EIO, str(e) or type(e).__name__, str(path)) from e
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise


def _fsync(path: Path) -> None:
    """Push ``path``'s data to the disk: a full disk or an I/O error shows up here, not later."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems do not fsync folders; the rename itself succeeded
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; a FIFO or device (``/dev/stdout``) is
    written in place, never replaced."""
    if is_special(path):
        with open(path, "wb") as f:
            f.write(data)
        return Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces the folder ``path``.

    Every file in it is fsynced first. The swap is two renames (old -> trash, new -> path),
    so a crash leaves either the previous complete folder or the new complete one under
    ``path`` (at worst the old one under a ``.trash`` name beside it, which the next write
    cleans up).
    """
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp.", dir=path.parent))
    trash = path.parent / f".{path.name}.trash"
    try:
        with _naming(path, tmp):
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
            yield tmp
            for file in sorted(tmp.rglob("*")):
                if file.is_file():
                    _fsync(file)
            if trash.exists():
                shutil.rmtree(trash)
            if path.exists():
                os.replace(path, trash)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        shutil.rmtree(trash, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
