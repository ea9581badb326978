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
import shutil
import tempfile
from collections.abc import Callable, Iterator
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
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.",
            suffix=path.suffix if suffix is None else suffix,
            dir=path.parent,
        )
        os.close(fd)
    tmp_path = Path(tmp)
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
