"""A build plan applied to the TensorRT API: the only module that calls the builder.

    plan = plan_build(meta.precision, BuildRequest(batch=(1, 1, 8)), probe_device(trt))
    build_engine("prune4-fp16.onnx", "prune4-fp16.engine", plan, meta)

Every decision (typing, flags, DLA, profile) is made in :mod:`trt_plan` without TensorRT;
``apply_plan`` calls the API each field names (TensorRT 8.5 to 11.x Python API):

    builder.create_network(1 << NetworkDefinitionCreationFlag.{EXPLICIT_BATCH,STRONGLY_TYPED})
    OnnxParser(network, logger).parse_from_file(path)
    config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)
    config.set_flag(BuilderFlag.<name>)                    (weakly typed plans only)
    layer.precision / layer.set_output_type(i, trt.float32)   (FP32 islands, weakly typed FP16)
    config.default_device_type = DeviceType.DLA; config.DLA_core = n;
    config.set_flag(BuilderFlag.GPU_FALLBACK); config.can_run_on_DLA(layer)
    profile.set_shape(input, min, opt, max); config.add_optimization_profile(profile)
    config.create_timing_cache(bytes); config.set_timing_cache(cache, ignore_mismatch=False)
    config.progress_monitor = IProgressMonitor subclass     (TensorRT >= 10)
    builder.build_serialized_network(network, config)

The engine file is a plain TensorRT plan, loadable by trtexec and Triton: TensorRT has no
field for user metadata, and prefixing the bytes (as Ultralytics does) breaks every other
loader. The metadata goes in the ``.json`` sidecar (the graph's plus the build record).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from edgevid._atomic import write_bytes
from edgevid.core.artifact import input_name, sidecar_path
from edgevid.core.meta import ModelMeta
from edgevid.errors import ExportError, require
from edgevid.runtime.backends.trt_plan import BuildPlan, DeviceFacts

_SHAPE_ONLY_LAYERS = ("SHAPE", "CONSTANT")  # never pinned to FP32: no arithmetic


def fp32_islands(layers: list[tuple[str, list[str]]]) -> list[int]:
    """Indices of the layers to pin to FP32 in a weakly typed FP16 build: those whose every
    output is FP32 in the parsed graph (the Casts the FP16 export put around LayerNorm,
    Softmax and the logits make them so). ``layers``: (layer type name, output dtype names),
    e.g. ``("SOFTMAX", ["FLOAT"])``."""
    return [
        i
        for i, (kind, outputs) in enumerate(layers)
        if outputs and kind not in _SHAPE_ONLY_LAYERS and all(d == "FLOAT" for d in outputs)
    ]


class BuildProgress:
    """The builder's top-level phases as lines, and at most one step line every ``every_s``
    seconds (a Jetson build takes minutes). Fed by TensorRT's IProgressMonitor (>= 10)."""

    def __init__(self, say, every_s: float = 10.0, clock=time.monotonic) -> None:
        self.say, self.every_s, self.clock = say, every_s, clock
        self.phases: dict[str, tuple[str | None, int, float]] = {}  # parent, steps, start
        self.last = clock()

    def start(self, phase: str, parent: str | None, steps: int) -> None:
        self.phases[phase] = (parent, steps, self.clock())
        if parent is None:
            self.say(f"  TensorRT: {phase} ...")

    def step(self, phase: str, step: int) -> bool:
        now = self.clock()
        if phase in self.phases and now - self.last >= self.every_s:
            self.last = now
            self.say(f"  TensorRT: {phase} {step + 1}/{self.phases[phase][1]}")
        return True  # never cancel: a stop signal ends the build's child process instead

    def finish(self, phase: str) -> None:
        parent, _, started = self.phases.pop(phase, (None, 0, self.clock()))
        if parent is None:
            self.say(f"  TensorRT: {phase} done in {self.clock() - started:.1f} s")


def load_tensorrt():
    """Import tensorrt or raise the one line that says what is missing."""
    return require("tensorrt", "trt", "building TensorRT engines (needs an NVIDIA GPU)")


def probe_device(trt) -> DeviceFacts:
    """This device's facts: TensorRT version, CUDA device properties, DLA cores."""
    from edgevid.runtime.backends.tensorrt import device_properties

    name, cc, sms = device_properties()
    return DeviceFacts(trt.__version__, name, cc, sms, _builder(trt, _logger(trt)).num_DLA_cores)


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def _builder(trt, logger):
    try:
        return trt.Builder(logger)
    except TypeError as e:  # pybind11 "factory function returned nullptr": no CUDA device
        raise ExportError("TensorRT found no usable NVIDIA GPU (CUDA initialisation failed)") from e


def network_flags(trt, plan: BuildPlan) -> int:
    flags = 0
    if plan.explicit_batch:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed and plan.tensorrt[0] < 11:  # 11: always, the flag is deprecated
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def apply_plan(
    plan: BuildPlan,
    trt,
    onnx_path: str | os.PathLike,
    meta: ModelMeta,
    *,
    timing_cache: str | os.PathLike | None = None,
    say=lambda line: None,
) -> tuple[bytes, dict]:
    """Build ``onnx_path`` as ``plan`` says: (serialized engine, build record)."""
    logger = _logger(trt)
    builder = _builder(trt, logger)
    network = builder.create_network(network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors))
        if "LayerNormalization" in errors:  # TensorRT 8.5 (JetPack 5) predates the op
            errors += "; export with --opset 16, which writes LayerNormalization out"
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mb << 20)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    pinned = _pin_fp32_islands(trt, network) if plan.pin_fp32 else 0
    fallback = None
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        if plan.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        fallback = sum(not config.can_run_on_DLA(layer) for layer in layers)
        say(f"DLA core {plan.dla_core}: {fallback} of {len(layers)} layers fall back to the GPU")
    profile = builder.create_optimization_profile()
    shape = tuple(network.get_input(0).shape)[1:]  # (T, 3, H, W) or (T, H, W, 3)
    lo, opt, hi = plan.profile
    profile.set_shape(input_name(meta), (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    cache = _load_timing_cache(config, timing_cache, say)
    monitor = _attach_progress(trt, config, say)
    serialized = builder.build_serialized_network(network, config)
    del monitor  # referenced until here: TensorRT calls it during the build
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build an engine for {onnx_path}")
    if timing_cache is not None:
        write_bytes(timing_cache, bytes(cache.serialize()))
    record = {
        "tensorrt": trt.__version__,
        "batch": list(plan.profile),
        "workspace_mb": plan.workspace_mb,
        "dla_core": plan.dla_core,
        "dla_gpu_fallback_layers": fallback,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.flags),
        "fp32_layers_pinned": pinned,
        "precision": plan.precision,
        "converted_to_fp16": plan.convert_fp16,
        "plan": plan.digest(),
    }
    return bytes(serialized), record


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    plan: BuildPlan,
    meta: ModelMeta,
    *,
    timing_cache: str | os.PathLike | None = None,
    record: dict | None = None,
    verbose: bool = True,
) -> Path:
    """Build ``onnx_path`` (already in the plan's precision) into ``engine_path`` + sidecar.
    ``record``: more fields for the sidecar's build record (the cache key). Runs in the
    build's child process (``engine_cache.run_in_child``): arguments are picklable."""
    trt = load_tensorrt()
    say = _stderr if verbose else (lambda line: None)
    data, build = apply_plan(plan, trt, onnx_path, meta, timing_cache=timing_cache, say=say)
    engine_path = Path(engine_path)
    write_bytes(engine_path, data)
    build = {**build, "onnx": Path(onnx_path).name, **(record or {})}
    meta = meta.replace(precision=plan.precision, extra={**meta.extra, "engine": build})
    meta.save(sidecar_path(engine_path))
    return engine_path


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _pin_fp32_islands(trt, network) -> int:
    """Weakly typed FP16: keep the graph's FP32 layers in FP32 (with
    OBEY_PRECISION_CONSTRAINTS set, the builder must honour it)."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    described = [
        (layer.type.name, [layer.get_output(j).dtype.name for j in range(layer.num_outputs)])
        for layer in layers
    ]
    pinned = fp32_islands(described)
    for i in pinned:
        layers[i].precision = trt.float32
        for j in range(layers[i].num_outputs):
            layers[i].set_output_type(j, trt.float32)
    return len(pinned)


def _attach_progress(trt, config, say):
    """Report build progress through ``config.progress_monitor`` where TensorRT has one;
    returns the monitor, which must stay referenced until the build ends."""
    if not hasattr(trt, "IProgressMonitor"):
        return None
    progress = BuildProgress(say)

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            progress.start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return progress.step(phase_name, step)

        def phase_finish(self, phase_name):
            progress.finish(phase_name)

    monitor = Monitor()
    config.progress_monitor = monitor
    return monitor


def _load_timing_cache(config, path: str | os.PathLike | None, say):
    """Reuse earlier kernel timings (a rebuild takes seconds instead of minutes). A cache
    this device or TensorRT version cannot use is reported and replaced by a fresh one."""
    data = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if data:
        say(f"timing cache {path} is from another device or TensorRT version: replacing it")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise ExportError("TensorRT refused a new, empty timing cache")
    return cache
