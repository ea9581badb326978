"""ONNX Runtime backend: TensorRT, CUDA or CPU execution provider, best available first."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgevid.core.artifact import check_io, read_meta, sidecar_path
from edgevid.core.schema import load_json
from edgevid.errors import MetadataError, ModelError
from edgevid.runtime.backends.base import Backend

# device -> providers to try, best first (only those this onnxruntime build has are used)
PROVIDERS = {
    "auto": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "cpu": ("CPUExecutionProvider",),
}
_LOAD_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def select_providers(device: str, path: Path, fp16: bool = False) -> list:
    """The execution providers for ``device`` this build has, with their options."""
    available = set(ort.get_available_providers())
    chosen = [p for p in PROVIDERS[device] if p in available]
    if device in ("cuda", "tensorrt") and chosen[0] != PROVIDERS[device][0]:
        raise ModelError(
            f"--device {device}: this onnxruntime has no {PROVIDERS[device][0]} "
            f"(has {', '.join(sorted(available))}); install onnxruntime-gpu"
        )
    options = {  # TensorRT EP: cache built engines beside the model, FP16 for FP16 graphs
        "TensorrtExecutionProvider": {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(path.parent / ".trt-cache"),
            "trt_fp16_enable": fp16,
        }
    }
    return [(p, options[p]) if p in options else p for p in chosen]


class OnnxRuntimeBackend(Backend):
    def __init__(
        self, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None
    ):
        super().__init__(path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only
        # No buffer reuse across tensors: ORT's reuse plan chains buffers so that one run
        # holds ~4x its live activations (prune8 FP32 at 224: 250 MB where 60 MB are ever
        # live at once). Without it the arena only grows to the real live set, and runs are
        # faster. Measured on 2 CPU cores, prune8: FP32 0.51 s / 389 MB peak vs 0.61 s /
        # 539 MB with reuse; INT8 static 0.19 s / 283 MB vs 0.33 s / 394 MB.
        so.enable_mem_reuse = False
        # Idle ORT threads sleep instead of spinning: on a small CPU the spinning steals the
        # cores the capture thread decodes on (prune8 INT8 dynamic, 2 cores: runtime
        # overhead 12.6% -> 9.1% of inference, inference itself 157 -> 150 ms).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            so.intra_op_num_threads = threads
        sidecar = _peek_precision(self.path)
        try:
            self.session = ort.InferenceSession(
                str(self.path), so, providers=select_providers(device, self.path, sidecar == "fp16")
            )
        except _LOAD_ERRORS as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.path}: not a valid ONNX model ({first[:200]})") from e
        self.meta = read_meta(self.path, self.session.get_modelmeta().custom_metadata_map)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(f"{self.path}: expected one input and a logits output")
        inp = inputs[0]
        check_io(self.path, self.meta, inp.name, inp.shape, outputs[0].shape)
        self.input_name, self.output_name = inp.name, outputs[0].name
        self.input_dtype = np.uint8 if inp.type == "tensor(uint8)" else np.float32
        batch = inp.shape[0]
        self.max_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.providers = self.session.get_providers()
        self.name = f"onnxruntime[{self.providers[0]}]"

    def _run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        try:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        except _LOAD_ERRORS as e:
            first = str(e).strip().splitlines()[0]
            raise ModelError(f"{self.path}: inference failed ({first[:200]})") from e
        finally:
            _trim_heap()


def _libc_malloc_trim():
    """glibc's malloc_trim, or None elsewhere (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _trim_heap() -> None:
    """Give the heap freed by a run (inputs, outputs, decoder and host buffers) back to the
    OS. The arena keeps the activations either way; trimming keeps glibc from holding the
    rest: in the runtime loop, prune8 INT8 peaks at 329 MB with it and 343 MB without
    (budget 340); the runs took 0.192 s with it, 0.187 s without (within noise)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _peek_precision(path: Path) -> str | None:
    """Precision from the sidecar if there is one (decides TensorRT EP FP16 before loading)."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:  # a broken sidecar is reported where the metadata is read, with its one line
        precision = load_json(side, "model metadata", MetadataError).get("precision")
    except (MetadataError, AttributeError):
        return None
    return precision if isinstance(precision, str) else None


BACKEND = OnnxRuntimeBackend
