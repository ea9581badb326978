"""How a ``.onnx`` becomes a TensorRT engine, decided in pure Python (no TensorRT, no GPU).

    facts = DeviceFacts("10.3.0.30", "Orin", (8, 7), 16, 2)
    plan = plan_build("fp32", BuildRequest(precision="fp16", batch=(2, 2, 2), dla_core=0), facts)
    plan.convert_fp16, plan.flags, plan.profile, plan.gpu_fallback   # True, ('FP16', ...), ...

Every decision lives here and is tested over the precision table, TensorRT 8.6/10.x/11.x,
GPU/DLA and batch profiles; ``tensorrt_build.apply_plan`` only calls the API it names.

Rules, one per decision:

- **Which graph**: the graph as exported. ``precision="fp16"`` on an FP32 graph converts it
  first with edgevid's own FP16 rules (LayerNorm, Softmax and the logits stay FP32); no
  other precision is converted on the device (INT8 needs calibration: ``edgevid export``).
- **Typing**: TensorRT 8.5/8.6 has only weak typing: FP16/INT8 builder flags, the FP32
  islands pinned. TensorRT 10.x builds FP32/FP16/BF16 graphs STRONGLY_TYPED (the graph's
  types are the precision) and INT8 Q/DQ graphs weakly typed with FP16 + INT8. TensorRT 11
  is strongly typed always and has no precision flags.
- **DLA** (Jetson): TensorRT 8.5 to 10.7 (the last release with DLA), one static batch,
  FP16 or INT8 only (the table's ``dla`` column), GPU fallback for the layers the DLA cannot
  run, weakly typed with the precision flags (the DLA documentation's build). An FP32 graph
  is skipped with a line, never an error: ``--precision fp16`` converts it.
- **Run time**: the engine's profile decides: fewer rows than MIN are padded with zeros,
  more than MAX are split (``chunks``).
- **Cache key**: graph bytes, TensorRT version, compute capability, the device (name and
  multiprocessor count: every Orin module is called "Orin"), the plan's digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from edgevid.core.precision import Tolerance, get_precision
from edgevid.errors import ExportError

TRT_OLDEST = (8, 5)  # explicit-batch tensor API, IProgressMonitor from 10.0
DLA_LAST = (10, 7)  # TensorRT 10.7 was the last release with DLA (TensorRT 11.3 docs)
DEFAULT_BATCH = (1, 1, 8)  # min, opt, max: one stream up to 8 streams batched together
DEFAULT_WORKSPACE_MB = 2048


@dataclass(frozen=True)
class DeviceFacts:
    """What the target device is, as the build sees it (probed on it, or given in tests)."""

    tensorrt: str  # trt.__version__, e.g. "10.3.0.30"
    gpu: str  # CUDA device name ("Orin" on every Orin module)
    compute_capability: tuple[int, int]  # (8, 7) on Orin
    multiprocessors: int  # SM count: tells an AGX Orin (16) from an Orin Nano (8)
    dla_cores: int = 0  # builder.num_DLA_cores (0 off Jetson)

    @property
    def version(self) -> tuple[int, int]:
        return version_tuple(self.tensorrt)


@dataclass(frozen=True)
class BuildRequest:
    """What the user asked for (``edgevid compile`` options, ``export --trt``, ``run``)."""

    precision: str | None = None  # None: as exported; "fp16": convert an FP32 graph first
    batch: tuple[int, int, int] = DEFAULT_BATCH  # min, opt, max of the optimisation profile
    dla_core: int | None = None  # Jetson DLA core, None: GPU only
    workspace_mb: int = DEFAULT_WORKSPACE_MB  # builder workspace memory pool


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build does, decided before TensorRT is touched."""

    graph_precision: str  # the .onnx's precision (its metadata)
    precision: str  # the engine's: the graph's, or "fp16" after conversion
    convert_fp16: bool  # convert the FP32 graph with edgevid's FP16 rules before building
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    explicit_batch: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (before 10 only)
    flags: tuple[str, ...]  # trt.BuilderFlag names (weakly typed builds only)
    pin_fp32: bool  # pin the graph's FP32 layers to FP32 (weakly typed FP16)
    profile: tuple[int, int, int]  # min, opt, max batch of optimisation profile 0
    dla_core: int | None  # config.DLA_core with default_device_type DLA; None: GPU
    gpu_fallback: bool  # BuilderFlag.GPU_FALLBACK: layers the DLA cannot run go to the GPU
    workspace_mb: int  # MemoryPoolType.WORKSPACE limit
    tensorrt: tuple[int, int]  # the TensorRT version the plan is for
    notes: tuple[str, ...] = field(default=(), compare=False)  # lines for the log

    @property
    def tolerance(self) -> Tolerance:
        """How close the engine must be to ONNX Runtime CPU on the graph as exported."""
        return get_precision(self.precision).tolerance

    def digest(self) -> str:
        """Hash of every setting that changes the engine (not the notes)."""
        d = {k: v for k, v in asdict(self).items() if k != "notes"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def chunks(self, rows: int) -> list[tuple[int, int, int]]:
        return chunks(rows, self.profile)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BuildPlan:
        """The plan ``to_dict`` wrote (JSON turned its tuples into lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class Skipped:
    """A build that is not done, and why (one line; never an error)."""

    reason: str


def version_tuple(version: str) -> tuple[int, int]:
    """``"10.3.0.26"`` -> ``(10, 3)``."""
    parts = (version.split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise ExportError(f"unrecognised TensorRT version {version!r}") from None


def parse_batch(text: str) -> tuple[int, int, int]:
    """ "1:4:8" -> (1, 4, 8); "8" -> (1, 8, 8)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise ExportError(f"--batch must be MIN:OPT:MAX integers, got {text!r}") from None
    if len(parts) == 1:
        parts = [1, parts[0], parts[0]]
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ExportError(f"--batch must satisfy 1 <= MIN <= OPT <= MAX, got {text!r}")
    return parts[0], parts[1], parts[2]


def check_batch(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = batch
    if not 1 <= lo <= opt <= hi:
        raise ExportError(f"batch range must satisfy 1 <= MIN <= OPT <= MAX, got {lo}:{opt}:{hi}")
    return batch


def check_dla_batch(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    """DLA engines take one batch size: min = opt = max, or a clear error."""
    lo, opt, hi = check_batch(batch)
    if not lo == opt == hi:
        raise ExportError(
            f"a DLA engine takes one batch size, not {lo}:{opt}:{hi}: "
            f"use --batch {hi}:{hi}:{hi} (or {opt}:{opt}:{opt}) with --dla-core"
        )
    return batch


def engine_precision(graph: str, want: str | None) -> tuple[str, bool]:
    """(the engine's precision, whether the graph is converted to FP16 first)."""
    get_precision(graph, ExportError)
    if want in (None, "auto", graph):
        return graph, False
    get_precision(want, ExportError)
    if want == "fp16" and graph == "fp32":
        return "fp16", True
    raise ExportError(
        f"a {graph} graph cannot be compiled as {want}: the device converts FP32 to FP16 only; "
        f"export a {want} graph (edgevid export --precision {want}) and compile that"
    )


def typing(precision: str, version: tuple[int, int], dla: bool) -> tuple[bool, bool, tuple, bool]:
    """(strongly typed, explicit batch, builder flags, pin FP32 islands) for a graph of
    ``precision`` on TensorRT ``version``; ``dla``: the weakly typed DLA build (< 11)."""
    row = get_precision(precision)
    major = version[0]
    explicit = major < 10  # implicit batch was the default before 10; 10 ignores the flag
    if major >= 11:
        return True, False, (), False  # strongly typed always: the flags no longer exist
    if dla or major < 10 or (row.trt_flags and not row.trt_typed):
        # weakly typed: the flags let the builder use the graph's kernels
        return False, explicit, row.trt_flags, bool(row.trt_flags) and row.trt_typed
    return True, explicit, (), False  # 10.x: the graph's types are the precision


def plan_build(graph: str, request: BuildRequest, facts: DeviceFacts) -> BuildPlan | Skipped:
    """The plan for a ``graph``-precision .onnx built as ``request`` asks on ``facts``' device."""
    row = get_precision(graph, ExportError)
    if row.fusions:
        raise ExportError(
            f"{graph} graphs are rewritten for CPU engines (ONNX Runtime, OpenVINO): build "
            "TensorRT engines from the fp32, fp16 or int8-static graph"
        )
    version = facts.version
    if version < TRT_OLDEST:
        raise ExportError(f"TensorRT {facts.tensorrt} is too old: edgevid needs 8.5 or newer")
    precision, convert = engine_precision(graph, request.precision)
    target = get_precision(precision)
    if version < target.trt_min:
        raise ExportError(
            f"TensorRT {facts.tensorrt} has no {precision.upper()}: "
            f"use TensorRT {'.'.join(map(str, target.trt_min))} or newer"
        )
    batch = check_batch(request.batch)
    dla = request.dla_core is not None
    if dla:
        batch = check_dla_batch(batch)
        if version > DLA_LAST:
            raise ExportError(
                f"TensorRT {facts.tensorrt} has no DLA support (10.7 was the last release "
                "with it): drop --dla-core, or build with JetPack 6's TensorRT 10.3"
            )
        if request.dla_core >= facts.dla_cores:
            raise ExportError(
                f"DLA core {request.dla_core} requested, this device has {facts.dla_cores}"
            )
        if not target.dla:
            return Skipped(
                f"DLA runs FP16 or INT8 only: the {precision} graph is not built for DLA core "
                f"{request.dla_core} (--precision fp16 converts an FP32 graph for it)"
            )
    strong, explicit, flags, pin = typing(precision, version, dla)
    notes = ()
    if convert:
        notes = ("converting the FP32 graph to FP16 first (LayerNorm, Softmax, logits FP32)",)
    return BuildPlan(
        graph_precision=graph,
        precision=precision,
        convert_fp16=convert,
        strongly_typed=strong,
        explicit_batch=explicit,
        flags=flags,
        pin_fp32=pin,
        profile=batch,
        dla_core=request.dla_core,
        gpu_fallback=dla,
        workspace_mb=request.workspace_mb,
        tensorrt=version,
        notes=notes,
    )


def chunks(rows: int, profile: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """How ``rows`` clips run on an engine with ``profile`` (min, opt, max): a list of
    (start, stop, batch): rows[start:stop] padded with zeros to ``batch`` rows, every batch
    within [min, max]. Read from the engine's profile, not its input shape (which is -1)."""
    lo, _, hi = profile
    out = []
    for start in range(0, rows, hi):
        stop = min(rows, start + hi)
        out.append((start, stop, max(lo, stop - start)))
    return out


def run_in_chunks(
    x: np.ndarray, profile: tuple[int, int, int], run_batch: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Logits of every row of ``x`` through ``run_batch``, which only ever sees a batch the
    profile allows (``chunks``: zero rows padded up to MIN, split above MAX)."""
    parts = []
    for start, stop, batch in chunks(len(x), profile):
        part = x[start:stop]
        if batch > len(part):
            part = np.concatenate([part, np.zeros((batch - len(part), *x.shape[1:]), x.dtype)])
        parts.append(run_batch(part)[: stop - start])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


@dataclass(frozen=True)
class EngineKey:
    """What a cached engine depends on; its digest names the cache entry."""

    graph_sha256: str  # of the .onnx file's bytes
    tensorrt: str  # version of the TensorRT that builds and loads it
    compute_capability: str  # "8.7"
    device: str  # GPU name and multiprocessor count ("Orin, 16 SMs")
    plan: str  # BuildPlan.digest(): typing, flags, workspace, conversion
    precision: str  # the engine's precision
    profile: tuple[int, int, int]  # min, opt, max batch
    dla_core: int | None  # DLA core, None: GPU

    def to_dict(self) -> dict:
        return {**asdict(self), "profile": list(self.profile)}

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def engine_key(graph_sha256: str, plan: BuildPlan, facts: DeviceFacts) -> EngineKey:
    cc = ".".join(map(str, facts.compute_capability))
    device = f"{facts.gpu}, {facts.multiprocessors} SMs"
    return EngineKey(graph_sha256, facts.tensorrt, cc, device, plan.digest(), plan.precision,
                     plan.profile, plan.dla_core)  # fmt: skip


def parity_problem(reference: np.ndarray, got: np.ndarray, tolerance: Tolerance) -> str | None:
    """Why an engine's logits are not the graph's (ONNX Runtime CPU) within ``tolerance``,
    or None. One clip: the cosine and the largest error are judged; top-1 agreement is a
    rate over many clips, which ``edgevid export`` verifies."""
    ref, out = reference.astype(np.float64), got.astype(np.float64)
    if ref.shape != out.shape:
        return f"logits of shape {out.shape}, expected {ref.shape}"
    if not np.isfinite(out).all():
        return "logits with NaN or infinite values"
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = float(np.mean(np.sum(ref * out, axis=1) / np.maximum(norms, 1e-12)))
    if cosine < tolerance.min_cosine:
        return f"cosine {cosine:.6f} with ONNX Runtime CPU, below {tolerance.min_cosine}"
    if tolerance.max_abs is not None:
        err = float(np.max(np.abs(ref - out)) / max(1.0, float(np.max(np.abs(ref)))))
        if err > tolerance.max_abs:
            return f"logit error {err:.2e} against ONNX Runtime CPU, over {tolerance.max_abs}"
    return None
