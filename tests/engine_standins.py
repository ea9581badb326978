"""Stand-ins for the TensorRT build, run by the engine cache's child process (where
TensorRT is absent): each writes an engine and a sidecar recording the key, as
``onnx_engine.build_entry`` does. Kept import-light: the child imports this module."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edgevid.errors import ExportError


def fake_build(engine: Path, *, key: dict, size: int = 64, seconds: float = 0.0,
               log: str | None = None) -> None:  # fmt: skip
    """Write a ``size``-byte engine after ``seconds``; append this process's pid to ``log``."""
    if log is not None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    engine.write_bytes(b"e" * size)
    engine.with_suffix(".json").write_text(json.dumps({"extra": {"engine": {"cache_key": key}}}))


def failing_build(engine: Path) -> None:
    raise ExportError("TensorRT 10.3 cannot parse m.onnx: unsupported op")


def crashing_build(engine: Path) -> None:
    raise RuntimeError("pybind11: factory function returned nullptr")
