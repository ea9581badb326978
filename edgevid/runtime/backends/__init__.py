"""Inference backends behind one interface, chosen from the model file's extension.

.onnx            ONNX Runtime (TensorRT / CUDA / CPU execution providers, best first)
.engine, .plan   native TensorRT (tensorrt + cuda-python, or pycuda)

backend = load_backend("prune4.onnx", device="auto")
logits = backend.run(x)          # x (B, T, 3, S, S) float32 or (B, T, S, S, 3) uint8
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from edgevid.errors import ModelError
from edgevid.runtime.backends.base import Backend

# extension -> module defining a Backend subclass named BACKEND (imported on demand:
# the TensorRT module is never imported on a machine that only runs ONNX)
_BY_EXTENSION = {
    ".onnx": "edgevid.runtime.backends.onnxruntime",
    ".engine": "edgevid.runtime.backends.tensorrt",
    ".plan": "edgevid.runtime.backends.tensorrt",
}
DEVICES = ("auto", "cpu", "cuda", "tensorrt")


def backend_class(path: str | os.PathLike) -> type[Backend]:
    ext = Path(path).suffix.lower()
    if ext not in _BY_EXTENSION:
        raise ModelError(
            f"{path}: unknown model format {ext or '(no extension)'!r}; "
            f"edgevid runs {', '.join(sorted(_BY_EXTENSION))}"
        )
    return importlib.import_module(_BY_EXTENSION[ext]).BACKEND


def load_backend(
    path: str | os.PathLike, device: str = "auto", threads: int | None = None
) -> Backend:
    """Open ``path`` with the backend its extension calls for (the file must exist)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    return backend_class(path)(path, device=device, threads=threads)


__all__ = ["Backend", "DEVICES", "backend_class", "load_backend"]
