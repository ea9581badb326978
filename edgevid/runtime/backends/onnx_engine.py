"""A ``.onnx`` on a machine with TensorRT and an NVIDIA GPU, but no GPU build of ONNX Runtime
(a Jetson: PyPI has no onnxruntime-gpu for aarch64): compiled to a TensorRT engine on first
use, cached, reused; what jetson-inference does.

    backend = engine_backend("prune4.onnx", device="auto", precision=None, log=print)

The engine is cached in ``EDGEVID_ENGINE_CACHE`` or ``<model folder>/.engine-cache/`` as
``<stem>-<key>.engine`` (+ ``.json`` sidecar), the key hashing the graph's bytes, the
TensorRT version, the GPU name, the batch profile and the precision asked for. Before an
engine is loaded its sidecar's key is compared with the wanted one: an engine built from
another graph, by another TensorRT or for another GPU is removed and rebuilt, never loaded.
Precision comes from the graph (an FP16 graph builds FP16); an FP32 graph gets TensorRT's
FP16 kernels unless ``--precision fp32``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgevid.core.schema import load_json
from edgevid.errors import EdgevidError, MetadataError, ModelError
from edgevid.runtime.backends.base import Backend

CACHE_ENV = "EDGEVID_ENGINE_CACHE"  # cache folder for every model (default: beside it)
CACHE_DIRNAME = ".engine-cache"
RUNTIME_BATCH = (1, 1, 8)  # min, opt, max: one stream up to 8 streams batched together
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class EngineKey:
    graph_sha256: str  # of the .onnx file's bytes
    tensorrt: str  # version of the TensorRT that builds and loads it
    gpu: str  # GPU name (engines are specific to one GPU)
    batch: tuple[int, int, int]  # min, opt, max batch of the profile
    fp16_kernels: bool  # FP16 kernels allowed in an FP32 graph

    def to_dict(self) -> dict:
        return {**asdict(self), "batch": list(self.batch)}

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def choose(device: str, ort_providers: list[str], has_tensorrt: bool, gpu: str | None) -> str:
    """``"engine"`` (compile with TensorRT) or ``"onnxruntime"`` for a ``.onnx`` model.

    ONNX Runtime keeps the model wherever it has a GPU provider (its TensorRT EP already
    caches engines), and always on ``--device cpu``; a GPU that only TensorRT can reach
    gets an engine."""
    if device == "cpu" or any(p in ort_providers for p in GPU_PROVIDERS):
        return "onnxruntime"
    if has_tensorrt and gpu is not None and device in ("auto", "tensorrt", "cuda"):
        return "engine"
    return "onnxruntime"


def graph_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir(model: Path) -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else model.parent / CACHE_DIRNAME


def engine_file(model: Path, key: EngineKey, folder: Path) -> Path:
    return folder / f"{model.stem}-{key.digest()}.engine"


def recorded_key(engine: Path) -> dict | None:
    """The cache key an engine's sidecar records, or None (no or unreadable sidecar)."""
    try:
        meta = load_json(engine.with_suffix(".json"), "engine metadata", MetadataError)
        return meta["extra"]["engine"]["cache_key"]
    except (MetadataError, KeyError, TypeError):
        return None


def remove_engine(engine: Path) -> None:
    for f in (engine, engine.with_suffix(".json")):
        f.unlink(missing_ok=True)


def cached_engine(model: Path, key: EngineKey, folder: Path) -> Path | None:
    """The usable cached engine for ``key``, or None. Every other engine of this model in
    ``folder`` (another graph, TensorRT, GPU or profile), and an entry whose sidecar does
    not record ``key`` (copied in, half written), is removed: rebuilt, never loaded."""
    want = engine_file(model, key, folder)
    for engine in folder.glob(f"{model.stem}-*.engine"):
        if len(engine.stem) != len(want.stem):
            continue  # another model whose name starts like this one
        if engine != want or recorded_key(engine) != key.to_dict():
            remove_engine(engine)
    return want if want.is_file() else None


def _probe_gpu() -> str | None:
    """The GPU's name when CUDA (through cuda-python or pycuda) finds one, else None."""
    from edgevid.runtime.backends.tensorrt import gpu_name

    try:
        return gpu_name()
    except (EdgevidError, ImportError, OSError, RuntimeError):
        return None


def engine_backend(
    path: Path, device: str, precision: str | None, log: Callable[[str], None]
) -> Backend | None:
    """A TensorRT backend for ``path`` compiled (or cached) for this GPU, or None when ONNX
    Runtime is the backend to use here."""
    import importlib.util

    import onnxruntime as ort

    has_trt = importlib.util.find_spec("tensorrt") is not None
    gpu = _probe_gpu() if has_trt else None
    if choose(device, ort.get_available_providers(), has_trt, gpu) != "engine":
        return None
    import tensorrt as trt

    from edgevid.runtime.backends.tensorrt import TensorRTBackend

    fp16 = precision != "fp32"
    key = EngineKey(graph_sha256(path), trt.__version__, gpu, RUNTIME_BATCH, fp16)
    folder = cache_dir(path)
    engine = cached_engine(path, key, folder)
    if engine is not None:
        try:
            backend = TensorRTBackend(engine, device=device)
            backend.selection = f"{path}: TensorRT engine {engine} (cached, {gpu})"
            return backend
        except ModelError as e:  # TensorRT refused it after all: rebuild, once
            log(f"{engine}: {e}; rebuilding")
            remove_engine(engine)
    engine, seconds = build(path, key, folder, log)
    backend = TensorRTBackend(engine, device=device)
    backend.selection = f"{path}: TensorRT engine {engine} (built in {seconds:.1f} s, {gpu})"
    return backend


def build(path: Path, key: EngineKey, folder: Path, log) -> tuple[Path, float]:
    """Compile ``path`` to the engine for ``key``; returns it and the seconds it took."""
    import onnxruntime as ort

    from edgevid.core.artifact import read_meta
    from edgevid.runtime.backends.tensorrt_build import onnx_to_engine

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = read_meta(path, session.get_modelmeta().custom_metadata_map)
    del session
    folder.mkdir(parents=True, exist_ok=True)
    engine = engine_file(path, key, folder)
    log(
        f"{path}: first use on {key.gpu}: compiling a TensorRT {key.tensorrt} engine "
        f"(batch {key.batch[0]}..{key.batch[2]}; minutes on a Jetson) ..."
    )
    t0 = time.perf_counter()
    onnx_to_engine(
        path, engine, batch=key.batch, fp16_kernels=key.fp16_kernels, log=log, meta=meta,
        record={"cache_key": key.to_dict()},
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    log(f"{path}: engine built in {seconds:.1f} s -> {engine}")
    return engine, seconds
