"""ONNX graph -> TensorRT engine: a thin compile step, TensorRT 8.5 to 11.x.

    onnx_to_engine("prune4-fp16.onnx", "prune4-fp16.engine", batch=(1, 1, 8))

Precision is already in the graph (FP16 types, INT8 Q/DQ pairs), so the builder only has to
be told to honour it, which differs by version:

- TensorRT 8.5/8.6 (JetPack 5): explicit-batch network; FP16 / INT8 builder flags let it pick
  those kernels (INT8 from the Q/DQ scales, no calibrator). An opset-16 graph is needed.
- TensorRT 10.x (JetPack 6, desktop): explicit batch is implied; same builder flags.
- TensorRT 11.x: networks are strongly typed and the precision flags are gone: the graph's
  types are the precision (STRONGLY_TYPED is set where the flag still exists).

The engine is written atomically with a ``.json`` sidecar (the graph's metadata plus the
build settings). Engines are specific to one GPU and TensorRT version: build on the target.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgevid._atomic import write_bytes
from edgevid.errors import ExportError, require
from edgevid.export.onnx_io import input_name, read_metadata, sidecar_path

DEFAULT_WORKSPACE_MB = 2048


def trt_major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def load_tensorrt():
    """Import tensorrt or raise the one line that says what is missing."""
    return require("tensorrt", "trt", "building TensorRT engines (needs an NVIDIA GPU)")


def onnx_to_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    batch: tuple[int, int, int] = (1, 1, 8),
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    timing_cache: str | os.PathLike | None = None,
    dla_core: int | None = None,
) -> Path:
    """Build a serialized engine for ``onnx_path`` with a (min, opt, max) batch profile."""
    trt = load_tensorrt()
    meta = read_metadata(onnx_path)
    lo, opt, hi = batch
    if not 1 <= lo <= opt <= hi:
        raise ExportError(f"batch range must satisfy 1 <= MIN <= OPT <= MAX, got {lo}:{opt}:{hi}")
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except TypeError as e:  # pybind11 "factory function returned nullptr": no CUDA device
        raise ExportError("TensorRT found no usable NVIDIA GPU (CUDA initialisation failed)") from e
    major = trt_major(trt)
    network = builder.create_network(_network_flags(trt, major))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors))
        if "LayerNormalization" in errors:  # TensorRT 8.5 (JetPack 5) predates the op
            errors += "; export with --opset 16, which writes LayerNormalization out"
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if major < 11:  # weakly typed: let the builder use the kernels the graph was made for
        if meta.precision in ("fp16", "int8-static"):
            config.set_flag(trt.BuilderFlag.FP16)
        if meta.precision == "int8-static":
            config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes
    if dla_core is not None:
        _use_dla(trt, builder, config, dla_core, meta.precision)

    profile = builder.create_optimization_profile()
    shape = tuple(network.get_input(0).shape)[1:]  # (T, 3, H, W) or (T, H, W, 3)
    profile.set_shape(input_name(meta), (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    cache = _load_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build an engine for {onnx_path}")
    engine_path = Path(engine_path)
    write_bytes(engine_path, bytes(serialized))
    if timing_cache is not None:
        write_bytes(timing_cache, bytes(cache.serialize()))
    build = {
        "tensorrt": trt.__version__,
        "batch": [lo, opt, hi],
        "workspace_mb": workspace_mb,
        "dla_core": dla_core,
        "onnx": Path(onnx_path).name,
    }
    meta.replace(extra={**meta.extra, "engine": build}).save(sidecar_path(engine_path))
    return engine_path


def _network_flags(trt, major: int) -> int:
    flags = 0
    if major < 10:  # implicit batch was the default before 10
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if major >= 11 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _use_dla(trt, builder, config, core: int, precision: str) -> None:
    """Run on a Jetson DLA core where it can, the GPU elsewhere. DLA needs FP16 or INT8."""
    if builder.num_DLA_cores <= core:
        raise ExportError(f"DLA core {core} requested, this device has {builder.num_DLA_cores}")
    if precision == "fp32":
        raise ExportError("a DLA core runs FP16 or INT8 only: export with --fp16 or --int8")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _load_timing_cache(config, path: str | os.PathLike | None):
    """Reuse earlier kernel timings (a rebuild takes seconds instead of minutes)."""
    data = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache
