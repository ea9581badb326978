"""ONNX Runtime backend: TensorRT, CUDA or CPU execution provider, best available first."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgevid.core.artifact import check_io, expected_input_shape, read_meta, sidecar_path
from edgevid.core.meta import ModelMeta
from edgevid.core.precision import PRECISIONS
from edgevid.errors import EdgevidError, ModelError
from edgevid.runtime.backends import engine_cache
from edgevid.runtime.backends.base import Backend

# device -> providers to try, best first (only those this onnxruntime build has are used)
PROVIDERS = {
    "auto": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "cpu": ("CPUExecutionProvider",),
}
ORT_TRT_DIRNAME = "onnxruntime-trt"  # the TensorRT EP's engines, inside edgevid's engine cache
TRT_EP_MAX_BATCH = 8  # the TensorRT EP profile's MAX batch: more clips at once are split
_LOAD_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def trt_ep_options(meta: ModelMeta | None, cache: Path) -> dict[str, object]:
    """ONNX Runtime's TensorRT EP options for a graph with metadata ``meta``: engines and the
    timing cache kept in ``cache`` (edgevid's engine cache: ``EDGEVID_ENGINE_CACHE``, beside
    the model, or the user's cache folder for a read-only one); FP16 / INT8 kernels as the
    precision table's row for the graph asks the TensorRT builder (``trt_flags``: an
    int8-static Q/DQ graph needs INT8);
    one optimisation profile over the batch, 1 : 1 : TRT_EP_MAX_BATCH clips, so a new camera
    count never rebuilds an engine. Without metadata, the EP's own defaults."""
    options: dict[str, object] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }
    if meta is None:
        return options
    flags = PRECISIONS[meta.precision].trt_flags
    name, shape = expected_input_shape(meta)
    dims = "x".join(map(str, shape))
    options |= {
        "trt_fp16_enable": "FP16" in flags,
        "trt_int8_enable": "INT8" in flags,
        "trt_profile_min_shapes": f"{name}:1x{dims}",
        "trt_profile_opt_shapes": f"{name}:1x{dims}",
        "trt_profile_max_shapes": f"{name}:{TRT_EP_MAX_BATCH}x{dims}",
    }
    return options


def cpu_graph(meta: ModelMeta | None) -> bool:
    """A graph made for CPU engines (a precision row with fusions: contrib ops, no TensorRT)."""
    return meta is not None and bool(PRECISIONS[meta.precision].fusions)


def select_providers(
    device: str, path: Path, meta: ModelMeta | None = None, cache: Path | None = None
) -> list:
    """The execution providers for ``device`` this build has, with their options. A CPU
    graph (``cpu_graph``) runs on the CPU provider whatever ``auto`` could reach."""
    available = set(ort.get_available_providers())
    wanted = PROVIDERS[device]
    if cpu_graph(meta) and device == "auto":
        wanted = PROVIDERS["cpu"]
    chosen = [p for p in wanted if p in available]
    if cpu_graph(meta) and device in ("cuda", "tensorrt"):
        raise ModelError(
            f"{path}: a {meta.precision} graph is made for CPU engines; run it with --device "
            "cpu or auto, or export int8-static / fp16 for the GPU"
        )
    if device in ("cuda", "tensorrt") and chosen[0] != PROVIDERS[device][0]:
        raise ModelError(
            f"--device {device}: this onnxruntime has no {PROVIDERS[device][0]} "
            f"(has {', '.join(sorted(available))}); install onnxruntime-gpu"
        )
    if "TensorrtExecutionProvider" not in chosen:
        return chosen
    cache = cache or engine_cache.cache_dir(path, _stderr) / ORT_TRT_DIRNAME
    cache.mkdir(parents=True, exist_ok=True)
    options = {"TensorrtExecutionProvider": trt_ep_options(meta, cache)}
    return [(p, options[p]) if p in options else p for p in chosen]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class OnnxRuntimeBackend(Backend):
    def __init__(
        self, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None
    ):
        super().__init__(path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only
        # No buffer reuse across tensors: ORT's reuse plan chains buffers so that one run
        # holds several times its live activations. Without it the arena only grows to the
        # real live set (the peaks it gives: benchmarks/results/bench_runtime*.json,
        # peak_rss_mb; the comparison with reuse on is not kept in a benchmark).
        so.enable_mem_reuse = False
        # Idle ORT threads sleep instead of spinning: on a small CPU the spinning steals the
        # cores the capture thread decodes on (the overhead share it gives:
        # benchmarks/results/bench_runtime*.json, overhead_ratio).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Exact INT8 matmuls on x86 CPUs without VNNI (AVX2, AVX-512 before VNNI): ORT's
        # default U8S8 kernels there add products in 16 bits and can saturate, which moved
        # INT8 graphs' logits off their FP32 ones on such a CPU; this takes the U8U8 kernels
        # (slower there; no effect on CPUs with VNNI or AMX, nor off x86).
        so.add_session_config_entry("session.x64quantprecision", "1")
        if threads:
            so.intra_op_num_threads = threads
        providers = select_providers(device, self.path, _peek_meta(self.path))
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
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
        if self.providers[0] == "TensorrtExecutionProvider" and self.max_batch is None:
            self.max_batch = TRT_EP_MAX_BATCH  # the profile's MAX: larger batches are split
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


def _peek_meta(path: Path) -> ModelMeta | None:
    """The sidecar's metadata if there is a readable one: it decides the providers and their
    options before the session exists (the graph's own copy is read once it does)."""
    if not sidecar_path(path).is_file():
        return None
    try:
        return read_meta(path)
    except EdgevidError:
        return None  # the session's embedded metadata decides, and names what is wrong


BACKEND = OnnxRuntimeBackend
