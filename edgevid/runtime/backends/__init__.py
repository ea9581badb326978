"""Inference backends behind one interface, chosen from the model file's extension (the
format table, :mod:`edgevid.core.formats`).

.onnx            ONNX Runtime (TensorRT / CUDA / CPU execution providers, best first), or
                 OpenVINO (--device openvino); --device auto on a CPU-only machine takes
                 whichever of the two measures faster for the graph (backends/choice.py)
.xml             OpenVINO IR (edgevid export --openvino)
.engine, .plan   native TensorRT (tensorrt + cuda-python, or pycuda)
triton://H:P/M   a model served by a Triton Inference Server (tritonclient, gRPC)

backend = load_backend("prune4.onnx", device="auto")
logits = backend.run(x)          # x (B, T, 3, S, S) float32 or (B, T, S, S, 3) uint8
backend.selection                # "backend: openvino (measured: ...)" when auto chose it
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from edgevid.core.formats import format_of, is_format
from edgevid.core.precision import OPENVINO_CHOICES as PRECISIONS
from edgevid.errors import ModelError
from edgevid.runtime.backends.base import Backend, open_backend, precision_hint

# devices that name a backend of their own, whatever the extension's default
_BY_DEVICE = {"openvino": "edgevid.runtime.backends.openvino"}
DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")
# URI scheme -> module of a remote backend (the "path" is the URI itself)
_BY_SCHEME = {
    "triton": "edgevid.runtime.backends.triton",
}


def uri_scheme(model: str | os.PathLike) -> str | None:
    """``"triton"`` for ``triton://...``; None for a file path."""
    text = str(model)
    scheme, sep, _ = text.partition("://")
    return scheme.lower() if sep and scheme.isalnum() else None


def backend_class(path: str | os.PathLike) -> type[Backend]:
    scheme = uri_scheme(path)
    if scheme is not None:
        if scheme not in _BY_SCHEME:
            raise ModelError(
                f"{path}: unknown model URI scheme {scheme!r}; edgevid serves from "
                f"{', '.join(s + '://' for s in sorted(_BY_SCHEME))}"
            )
        return importlib.import_module(_BY_SCHEME[scheme]).BACKEND
    # the format's module is imported on demand: never TensorRT on a machine that runs ONNX
    return importlib.import_module(format_of(path).backend).BACKEND


def load_backend(
    path: str | os.PathLike,
    device: str = "auto",
    threads: int | None = None,
    precision: str | None = None,
) -> Backend:
    """Open ``path`` with the backend its extension (or ``device``) calls for.

    ``precision`` is OpenVINO's inference precision (auto | fp32 | bf16 | fp16); giving one
    other than auto with ``device="auto"`` picks OpenVINO, the backend that takes it. Where
    TensorRT and a GPU exist but ONNX Runtime has no GPU provider (a Jetson), a ``.onnx`` is
    compiled to a cached TensorRT engine instead (backends/onnx_engine.py); there ``fp32``
    keeps an FP32 graph off FP16 kernels.
    """
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if uri_scheme(path) is not None:  # a served model: the server decides device/precision
        return backend_class(path)(str(path), device=device, threads=threads)
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if precision not in (None, *PRECISIONS):
        raise ModelError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if is_format(path, "onnx") and device in ("auto", "tensorrt", "cuda"):
        from edgevid.runtime.backends.onnx_engine import engine_backend

        engine = engine_backend(path, device, precision, log=_stderr_line)
        if engine is not None:  # TensorRT + a GPU that ONNX Runtime cannot use (Jetson)
            return engine
    hinted = precision not in (None, "auto")
    if hinted and device == "auto":
        device = "openvino"
    module = _BY_DEVICE.get(device)
    if module is None:
        module = backend_class(path).__module__
    if device == "auto" and not hinted and not is_format(path, "tensorrt"):
        from edgevid.runtime.backends.choice import choose_cpu_backend

        choice, backend = choose_cpu_backend(path, threads)
        backend.selection = choice.note()
        return backend
    if module.endswith(".openvino"):
        return open_backend(module, path, device, threads, **precision_hint(precision))
    if hinted:
        raise ModelError(f"--precision {precision} is an OpenVINO setting: use --device openvino")
    return open_backend(module, path, device, threads)


def _stderr_line(line: str) -> None:
    """Progress of a long first-use step (an engine build), one line at a time."""
    print(line, file=sys.stderr, flush=True)


__all__ = ["Backend", "DEVICES", "PRECISIONS", "backend_class", "load_backend", "uri_scheme"]
