"""ONNX graph -> TensorRT engine: a thin compile step, TensorRT 8.5 to 11.x.

    onnx_to_engine("prune4-fp16.onnx", "prune4-fp16.engine", batch=(1, 1, 8))

Precision is already in the graph (FP16 types, INT8 Q/DQ pairs); how the builder is told to
honour it depends on the version (:func:`build_plan`, one row per graph precision):

- TensorRT 8.5/8.6 (JetPack 5): weakly typed, explicit-batch network. FP16 graphs set the
  FP16 flag plus OBEY_PRECISION_CONSTRAINTS, with the FP32 islands the export keeps
  (LayerNorm, Softmax, logits) pinned to FP32 layer by layer; INT8 Q/DQ graphs set INT8 +
  FP16 (scales from the Q/DQ nodes, no calibrator). An opset-16 graph is needed.
- TensorRT 10.x (JetPack 6, desktop): FP16/BF16 graphs build STRONGLY_TYPED, so the graph's
  types are the precision and its FP32 islands are honoured; the weak-typing flags are
  deprecated from 10.12 and only used where a graph has no types to follow (INT8 Q/DQ: FP16
  for the rest; an FP32 graph built with FP16 kernels on request).
- TensorRT 11.x: every network is strongly typed; the precision flags are gone.

DLA (Jetson): one static batch (min = opt = max), FP16 or INT8 only; the layers that cannot
run on the DLA fall back to the GPU and are counted. The timing cache is checked: a cache
from another device or version is reported and replaced, not written back unchanged.

The engine is written atomically with a ``.json`` sidecar (the graph's metadata plus the
build settings). Engines are specific to one GPU and TensorRT version: build on the target.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgevid._atomic import write_bytes
from edgevid.core.artifact import input_name, sidecar_path
from edgevid.core.meta import ModelMeta
from edgevid.core.onnx_file import read_metadata
from edgevid.core.precision import get_precision
from edgevid.errors import ExportError, require

DEFAULT_WORKSPACE_MB = 2048
_SHAPE_ONLY_LAYERS = ("SHAPE", "CONSTANT")  # never pinned to FP32: no arithmetic


@dataclass(frozen=True)
class BuildPlan:
    """How one graph precision is built by one TensorRT version."""

    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED: graph types rule
    explicit_batch: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (before 10 only)
    flags: tuple[str, ...]  # BuilderFlag names to set (weakly typed only)
    pin_fp32: bool  # pin the FP32 islands' layer precision (weakly typed FP16 graphs)
    note: str = ""  # what the build does about precision, for the log (empty: nothing odd)


def version_tuple(version: str) -> tuple[int, int]:
    """``"10.3.0.26"`` -> ``(10, 3)``."""
    parts = (version.split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise ExportError(f"unrecognised TensorRT version {version!r}") from None


def build_plan(
    precision: str, version: tuple[int, int], *, fp16_kernels: bool = False
) -> BuildPlan:
    """The network flags and builder flags for a ``precision`` graph on TensorRT ``version``.

    ``fp16_kernels`` asks for FP16 kernels in an FP32 graph (a Jetson compiling a plain
    ``.onnx``), which only weak typing can do: TensorRT 11 builds the graph's FP32 as is."""
    row = get_precision(precision, ExportError)
    if row.fusions:
        raise ExportError(
            f"{precision} graphs are rewritten for CPU engines (ONNX Runtime, OpenVINO): build "
            "TensorRT engines from the int8-static graph (export --int8 static)"
        )
    major, minor = version
    if (major, minor) < (8, 5):
        raise ExportError(f"TensorRT {major}.{minor} is too old: edgevid needs 8.5 or newer")
    if (major, minor) < row.trt_min:
        raise ExportError(
            f"TensorRT {major}.{minor} has no {precision.upper()}: "
            f"use TensorRT {'.'.join(map(str, row.trt_min))} or newer"
        )
    explicit = major < 10  # implicit batch was the default before 10; 10 ignores the flag
    strong = BuildPlan(True, explicit, (), False)
    fp16_kernels = fp16_kernels and precision == "fp32"
    if major >= 11:  # strongly typed, always: the flags no longer exist
        if fp16_kernels:
            return BuildPlan(True, False, (), False, "TensorRT 11 builds an FP32 graph in FP32: "
                             "export --fp16 for FP16 kernels")  # fmt: skip
        return strong
    if row.trt_typed and major >= 10:
        return strong  # the FP32 islands around LayerNorm/Softmax are honoured as typed
    if row.trt_flags:  # weakly typed: the builder flags let it use the graph's kernels
        return BuildPlan(False, explicit, row.trt_flags, row.trt_typed)
    if fp16_kernels:
        return BuildPlan(False, explicit, ("FP16",), False)
    return BuildPlan(major >= 10, explicit, (), False)


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


def check_dla_batch(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    """DLA engines take one batch size: min = opt = max, or a clear error."""
    lo, opt, hi = batch
    if not lo == opt == hi:
        raise ExportError(
            f"a DLA engine takes one batch size, not {lo}:{opt}:{hi}: "
            f"use --batch {hi}:{hi}:{hi} (or {opt}:{opt}:{opt}) with --dla-core"
        )
    return batch


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
        return True  # never cancel the build

    def finish(self, phase: str) -> None:
        parent, _, started = self.phases.pop(phase, (None, 0, self.clock()))
        if parent is None:
            self.say(f"  TensorRT: {phase} done in {self.clock() - started:.1f} s")


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
    fp16_kernels: bool = False,
    log=None,
    meta: ModelMeta | None = None,
    record: dict | None = None,
) -> Path:
    """Build a serialized engine for ``onnx_path`` with a (min, opt, max) batch profile.

    ``fp16_kernels``: let an FP32 graph use FP16 kernels (weakly typed TensorRT < 11).
    ``log``: a callable taking one line (timing-cache and DLA reports); None: silent.
    ``meta``: the graph's metadata when the caller has it (the runtime has no ``onnx``).
    ``record``: more fields for the sidecar's build record (the runtime's cache key)."""
    trt = load_tensorrt()
    say = log or (lambda line: None)
    meta = meta or read_metadata(onnx_path)
    lo, opt, hi = batch
    if not 1 <= lo <= opt <= hi:
        raise ExportError(f"batch range must satisfy 1 <= MIN <= OPT <= MAX, got {lo}:{opt}:{hi}")
    if dla_core is not None:
        lo, opt, hi = check_dla_batch(batch)
    plan = build_plan(meta.precision, version_tuple(trt.__version__), fp16_kernels=fp16_kernels)
    if plan.note:
        say(plan.note)
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except TypeError as e:  # pybind11 "factory function returned nullptr": no CUDA device
        raise ExportError("TensorRT found no usable NVIDIA GPU (CUDA initialisation failed)") from e
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors))
        if "LayerNormalization" in errors:  # TensorRT 8.5 (JetPack 5) predates the op
            errors += "; export with --opset 16, which writes LayerNormalization out"
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.pin_fp32:
        _pin_fp32_islands(trt, network)
    fallback = None
    if dla_core is not None:
        fallback = _use_dla(trt, builder, network, config, dla_core, meta.precision, plan)
        say(f"DLA core {dla_core}: {fallback} of {network.num_layers} layers fall back to the GPU")

    profile = builder.create_optimization_profile()
    shape = tuple(network.get_input(0).shape)[1:]  # (T, 3, H, W) or (T, H, W, 3)
    profile.set_shape(input_name(meta), (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    cache = _load_timing_cache(config, timing_cache, say)
    monitor = _attach_progress(trt, config, say) if log is not None else None

    serialized = builder.build_serialized_network(network, config)
    del monitor  # referenced until here: TensorRT calls it during the build
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
        "dla_gpu_fallback_layers": fallback,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.flags),
        "onnx": Path(onnx_path).name,
        **(record or {}),
    }
    meta.replace(extra={**meta.extra, "engine": build}).save(sidecar_path(engine_path))
    return engine_path


def _network_flags(trt, plan: BuildPlan) -> int:
    flags = 0
    if plan.explicit_batch:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:  # TensorRT >= 10 (11 accepts and ignores it)
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


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


def _use_dla(trt, builder, network, config, core: int, precision: str, plan: BuildPlan) -> int:
    """Run on a Jetson DLA core where it can, the GPU elsewhere; returns how many layers
    fall back to the GPU. DLA needs FP16 or INT8."""
    if builder.num_DLA_cores <= core:
        raise ExportError(f"DLA core {core} requested, this device has {builder.num_DLA_cores}")
    if precision == "fp32" and "FP16" not in plan.flags:
        raise ExportError("a DLA core runs FP16 or INT8 only: export with --fp16 or --int8")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return sum(not config.can_run_on_DLA(network.get_layer(i)) for i in range(network.num_layers))


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
