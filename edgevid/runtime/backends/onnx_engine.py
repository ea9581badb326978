"""A ``.onnx`` compiled for this device's TensorRT, cached, checked, reused: what
jetson-inference does at first load, and what ``edgevid compile`` does on purpose.

    entry = compile_onnx("prune4.onnx", BuildRequest(precision="fp16"), log=print)
    backend = engine_backend("prune4.onnx", device="auto", precision=None, log=print)

The plan comes from :mod:`trt_plan` (the graph's precision, the request, the device facts),
the cache from :mod:`engine_cache` (one entry per key, built once under a lock, in a child
process, published whole). Before an engine is published, one clip is run through it and
through ONNX Runtime's CPU provider on the graph as exported: an engine outside the
precision table's tolerance is refused with one line, never cached.

``engine_backend`` is where ``--device auto`` goes on a machine with TensorRT and a GPU that
ONNX Runtime cannot use (a Jetson: PyPI has no onnxruntime-gpu for aarch64). A graph for CPU
engines (a precision row with fusions: int8-dynamic, int8-cpu) stays on ONNX Runtime's CPU
provider with one line saying so; TensorRT cannot build it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgevid.core.artifact import read_meta, sidecar_path
from edgevid.core.meta import ModelMeta
from edgevid.core.precision import get_precision
from edgevid.errors import EdgevidError, ModelError
from edgevid.runtime.backends import engine_cache
from edgevid.runtime.backends.base import Backend
from edgevid.runtime.backends.trt_plan import (
    BuildPlan,
    BuildRequest,
    DeviceFacts,
    Skipped,
    engine_key,
    parity_problem,
    plan_build,
)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
TIMING_CACHE = "timing.cache"  # in the cache folder, shared by every build there
Log = Callable[[str], None]


def choose(
    device: str, ort_providers: list[str], has_tensorrt: bool, has_gpu: bool, precision: str
) -> str:
    """``"engine"`` (compile with TensorRT), ``"onnxruntime"``, or ``"cpu-graph"`` (a graph
    only CPU engines run: ONNX Runtime CPU, said in one line) for a ``.onnx`` model.

    ONNX Runtime keeps the model wherever it has a GPU provider (its TensorRT EP caches
    engines), and always on ``--device cpu``; a GPU only TensorRT can reach gets an engine."""
    if device == "cpu" or any(p in ort_providers for p in GPU_PROVIDERS):
        return "onnxruntime"
    if has_tensorrt and has_gpu and device in ("auto", "tensorrt", "cuda"):
        return "cpu-graph" if get_precision(precision).fusions else "engine"
    return "onnxruntime"


def graph_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def graph_meta(path: Path) -> ModelMeta:
    """The graph's metadata: its sidecar, else embedded (read with ONNX Runtime)."""
    import onnxruntime as ort

    if sidecar_path(path).is_file():
        return read_meta(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return read_meta(path, session.get_modelmeta().custom_metadata_map)


def probe_clip(meta: ModelMeta, rows: int = 1, seed: int = 0) -> np.ndarray:
    """A fixed input of ``rows`` clips in the graph's input format (the parity clip)."""
    rng = np.random.default_rng(seed)
    t, s = meta.num_frames, meta.image_size
    if meta.input_format == "uint8":
        return rng.integers(0, 256, (rows, t, s, s, 3), dtype=np.uint8)
    return rng.standard_normal((rows, t, 3, s, s), dtype=np.float32)


def check_parity(graph: str, tolerance_of: str, engine: str | os.PathLike) -> None:
    """Refuse ``engine`` unless one clip's logits match ONNX Runtime CPU on ``graph`` within
    the tolerance of precision ``tolerance_of``."""
    from edgevid.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from edgevid.runtime.backends.tensorrt import TensorRTBackend

    with OnnxRuntimeBackend(graph, device="cpu") as reference:
        x = probe_clip(reference.meta)
        expected = reference.run(x)
    with TensorRTBackend(engine) as backend:
        got = backend.run(x)
    problem = parity_problem(expected, got, get_precision(tolerance_of).tolerance)
    if problem:
        raise ModelError(f"{graph}: the {tolerance_of} TensorRT engine is refused: {problem}")


def build_step(
    graph: Path, plan: BuildPlan, meta: ModelMeta, key: dict | None, timing_cache: Path | None
) -> engine_cache.BuildStep:
    """``build_entry`` with these arguments, for the build's child process (as JSON)."""
    kwargs = {"graph": str(graph), "plan": plan.to_dict(), "meta": meta.to_dict(), "key": key,
              "timing_cache": None if timing_cache is None else str(timing_cache)}  # fmt: skip
    return engine_cache.BuildStep(f"{__name__}:build_entry", kwargs)


def build_entry(
    engine: Path, *, graph: str, plan: dict, meta: dict, key: dict | None,
    timing_cache: str | None,
) -> None:  # fmt: skip
    """The build, in its child process: convert to FP16 if the plan says so, then build
    ``engine`` and its sidecar (recording the cache ``key`` when there is one)."""
    from edgevid.runtime.backends.tensorrt_build import build_engine

    plan, meta = BuildPlan.from_dict(plan), ModelMeta.from_dict(meta)
    source = graph
    if plan.convert_fp16:  # edgevid's FP16 rules; needs onnx only (torch-free)
        from edgevid.export.fp16 import onnx_to_fp16

        source = str(onnx_to_fp16(graph, engine.parent / f".{engine.stem}-fp16.onnx"))
    try:
        record = {} if key is None else {"cache_key": key}
        build_engine(source, engine, plan, meta, timing_cache=timing_cache, record=record)
    finally:
        if source != graph:
            Path(source).unlink(missing_ok=True)
            sidecar_path(source).unlink(missing_ok=True)


def build_file(
    graph: Path, engine: Path, plan: BuildPlan, meta: ModelMeta, timing_cache: Path | None
) -> Path:
    """``engine`` (+ sidecar) built from ``graph`` as ``plan`` says, in a child process, and
    checked against ONNX Runtime CPU: ``edgevid export --trt``'s engines."""
    engine_cache.run_in_child(build_step(graph, plan, meta, None, timing_cache), engine)
    try:
        check_parity(str(graph), plan.precision, engine)
    except ModelError:
        engine.unlink(missing_ok=True)
        sidecar_path(engine).unlink(missing_ok=True)
        raise
    return engine


def compile_onnx(
    path: str | os.PathLike,
    request: BuildRequest,
    *,
    log: Log = lambda line: None,
    facts: DeviceFacts | None = None,
    folder: Path | None = None,
    meta: ModelMeta | None = None,
    timing_cache: Path | None = None,
) -> tuple[engine_cache.Entry, bool] | Skipped:
    """The cached engine of ``path`` for ``request`` on this device, built if needed:
    (entry, whether it was built now), or :class:`Skipped` (an FP32 graph on a DLA core)."""
    from edgevid.runtime.backends.tensorrt_build import load_tensorrt, probe_device

    path = Path(path)
    meta = meta or graph_meta(path)
    if facts is None:
        facts = probe_device(load_tensorrt())
    plan = plan_build(meta.precision, request, facts)
    if isinstance(plan, Skipped):
        log(f"{path}: {plan.reason}")
        return plan
    for note in plan.notes:
        log(f"{path}: {note}")
    key = engine_key(graph_sha256(path), plan, facts)
    folder = folder or engine_cache.cache_dir(path, log)
    where = f"DLA core {plan.dla_core}" if plan.dla_core is not None else facts.gpu
    build = build_step(path, plan, meta, key.to_dict(), timing_cache or folder / TIMING_CACHE)
    check = functools.partial(check_parity, str(path), plan.precision)
    log(f"{path}: looking for a {plan.precision} engine for {where} (TensorRT {facts.tensorrt}, "
        f"batch {':'.join(map(str, plan.profile))}) in {folder}")  # fmt: skip
    t0 = time.perf_counter()
    entry, built = engine_cache.get_or_build(
        folder, path.stem, key.to_dict(), key.digest(), build, check=check, log=log
    )
    if built:
        log(f"{path}: engine built and checked in {time.perf_counter() - t0:.1f} s")
    return entry, built


def engine_backend(path: Path, device: str, precision: str | None, log: Log) -> Backend | None:
    """A TensorRT backend for ``path`` compiled (or cached) for this GPU, or None when ONNX
    Runtime is the backend to use here."""
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if importlib.util.find_spec("tensorrt") is None:
        return None
    if choose(device, providers, True, True, "fp32") != "engine":
        return None  # --device cpu, or ONNX Runtime has a GPU provider: nothing to probe
    facts = _probe_facts()
    meta = graph_meta(path)
    route = choose(device, providers, True, facts is not None, meta.precision)
    if route == "cpu-graph":
        log(f"{path}: a {meta.precision} graph is for CPU engines: ONNX Runtime CPU runs it "
            "(TensorRT builds the fp32, fp16 and int8-static graphs)")  # fmt: skip
    if route != "engine":
        return None
    from edgevid.runtime.backends.tensorrt import TensorRTBackend

    request = BuildRequest(precision=None if precision in (None, "auto") else precision)
    result = compile_onnx(path, request, log=log, facts=facts, meta=meta)
    if isinstance(result, Skipped):
        return None
    entry, built = result
    try:
        backend = TensorRTBackend(entry.engine, device=device)
    except ModelError as e:  # loads no more (a driver update): rebuilt once
        if built:
            raise
        log(f"{entry.engine}: {e}; rebuilding")
        shutil.rmtree(entry.folder, ignore_errors=True)
        entry, built = compile_onnx(path, request, log=log, facts=facts, meta=meta)
        backend = TensorRTBackend(entry.engine, device=device)
    how = "built now" if built else "cached"
    backend.selection = f"{path}: TensorRT engine {entry.engine} ({how}, {facts.gpu})"
    return backend


def _probe_facts() -> DeviceFacts | None:
    """This device's facts when TensorRT and CUDA find a GPU, else None."""
    from edgevid.runtime.backends.tensorrt_build import load_tensorrt, probe_device

    try:
        return probe_device(load_tensorrt())
    except (EdgevidError, ImportError, OSError, RuntimeError):
        return None
