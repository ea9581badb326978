"""Which CPU backend runs a ``.onnx`` graph by default: the one that measures faster for it.

The rule (``--device auto``, a ``.onnx`` file, no GPU execution provider in ONNX Runtime;
for an OpenVINO IR ``.xml`` the same rule among OpenVINO's precisions):

1. ``EDGEVID_CPU_BACKEND=onnxruntime|openvino`` in the environment -> that one (``auto`` or
   unset: the rule below). The test suite sets ``onnxruntime`` so its numbers are ORT's.
2. Only ONNX Runtime is installed -> ONNX Runtime. So is a graph whose metadata records
   ONNX Runtime contrib ops (``calibration.contrib_ops``, edgevid's INT8 dynamic graph):
   OpenVINO runs those ops at a third of ONNX Runtime's speed (prune8: 4.8 s vs 1.4 s per
   clip, loaded machine) and compiling them peaked at 1 GB, so timing it only costs.
3. Else every candidate (ONNX Runtime CPU; OpenVINO CPU at f32; OpenVINO CPU at bf16 where
   the CPU lists BF16) is timed once on this graph, this CPU, these threads: a warm-up run, then
   the fastest of at least ``RUNS`` runs of one clip (more for small graphs, up to
   ``MIN_TIMING_S``: the fastest run is what load on a shared machine disturbs least).
   The faster wins. Each candidate is timed in a child process (``edgevid time-backend``), so
   the running process never holds more than the chosen one: its peak memory is the same on
   the first run as on every cached one. A candidate that fails to load there is left out.
4. The result is cached beside the model in ``<model>.backend.json``, keyed by the file's
   size and mtime, the CPU, the thread count and both library versions; any change measures
   again. A folder that cannot be written to just means measuring at every start.

Why measure rather than a fixed table: the winner depends on the graph and on the CPU, not
only the engine. OpenVINO runs the INT8-dynamic graph ~3x slower than ONNX Runtime; bf16 is
2x FP32 on a CPU with fast bf16 units (AMD Zen 4, Intel AMX) but half of it on a CPU that
lists avx512_bf16 without fast units behind it (the 2-core Xeon VM of benchmarks/bench_cpu.py).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid._atomic import write_json
from edgevid.core.artifact import read_meta
from edgevid.core.formats import auto_choice_path, is_format
from edgevid.core.schema import load_json
from edgevid.errors import MetadataError, ModelError
from edgevid.runtime.backends.base import Backend, open_candidate, run_edgevid

RUNS = 3  # timed runs per candidate at least (after one warm-up)
MIN_TIMING_S = 0.5  # ... and more runs, up to MAX_RUNS, until this much time was spent
MAX_RUNS = 50
TIMING_TIMEOUT_S = 600  # one candidate's load + timing in its child process
ENV = "EDGEVID_CPU_BACKEND"  # onnxruntime | openvino | auto: overrides the measurement
CONTRIB = "ONNX Runtime contrib ops"  # the reason a fused graph is ONNX Runtime's untimed
ORT, OV = "edgevid.runtime.backends.onnxruntime", "edgevid.runtime.backends.openvino"
CANDIDATES = {  # candidate -> (module with its BACKEND class, OpenVINO precision)
    "onnxruntime": (ORT, None),
    "openvino-fp32": (OV, "fp32"),
    "openvino-bf16": (OV, "bf16"),  # only where the CPU lists BF16
    "openvino": (OV, "auto"),  # EDGEVID_CPU_BACKEND=openvino: its own default precision
}


@dataclass
class Choice:
    backend: str  # a CANDIDATES key
    ms: dict[str, float]  # fastest ms per clip of every candidate timed (empty: none timed)
    reason: str  # "measured", "cached", "only candidate", "GPU", ENV, CONTRIB
    cache: str | None = None  # the cache file read or written

    def note(self) -> str:
        """The one line printed when a run starts."""
        timed = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(self.ms.items(), key=lambda i: i[1]))
        how = f" ({self.reason}: {timed} per clip)" if timed else f" ({self.reason})"
        return f"backend: {self.backend}{how}"


def cache_path(model: str | os.PathLike) -> Path:
    return auto_choice_path(model)  # <model>.backend.json beside the model


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cache_key(model: Path, threads: int | None) -> dict:
    """What a cached choice depends on: the graph file, the CPU, the threads, the engines."""
    import onnxruntime

    st = model.stat()
    key = {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "onnxruntime": onnxruntime.__version__,
    }
    if has_openvino():
        import openvino

        key["openvino"] = openvino.__version__
    return key


def has_openvino() -> bool:
    try:
        return importlib.util.find_spec("openvino") is not None
    except ValueError:  # sys.modules["openvino"] is None: imports of it are blocked
        return False


def has_gpu_provider() -> bool:
    import onnxruntime

    gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    return bool(gpu & set(onnxruntime.get_available_providers()))


def time_backend(backend: Backend) -> float:
    """Fastest ms of one clip through ``backend`` (after a warm-up run)."""
    meta = backend.meta
    t, s = meta.num_frames, meta.image_size
    shape = (1, t, s, s, 3) if meta.input_format == "uint8" else (1, t, 3, s, s)
    x = np.zeros(shape, np.uint8 if meta.input_format == "uint8" else np.float32)
    backend.run(x)
    times: list[float] = []
    while len(times) < RUNS or (sum(times) < MIN_TIMING_S * 1e3 and len(times) < MAX_RUNS):
        t0 = time.perf_counter()
        backend.run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times)


def time_in_child(model: Path, candidate: str, threads: int | None) -> float:
    """Fastest ms of one clip through ``candidate``, timed in a child process (the hidden
    ``edgevid time-backend``): what loading and compiling every candidate costs in memory
    never adds to this process's peak, which then holds the chosen backend alone. A
    candidate that cannot load there raises ModelError with the child's error line."""
    args = ["time-backend", str(model), candidate]
    args += ["--threads", str(threads)] if threads else []
    line = run_edgevid(args, what=f"{model}: timing {candidate}", timeout_s=TIMING_TIMEOUT_S)
    return float(line.split()[-1])


def time_candidate(model: str | os.PathLike, candidate: str, threads: int | None) -> float:
    """Load ``model`` with one candidate in this process and time it (the child's side)."""
    backend = open_candidate(Path(model), *CANDIDATES[candidate], threads)
    try:
        return time_backend(backend)
    finally:
        backend.close()


def read_cache(model: Path, key: dict) -> Choice | None:
    """The cached choice, or None when there is none or it is stale or broken in any way
    (then the candidates are timed again and the cache rewritten): never an error."""
    path = cache_path(model)
    try:
        d = load_json(path, "backend cache", ModelError, max_bytes=2**20)
    except ModelError:
        return None
    if not isinstance(d, dict) or d.get("key") != key or d.get("backend") not in CANDIDATES:
        return None
    ms = d.get("ms", {})
    if not isinstance(ms, dict) or not all(
        k in CANDIDATES and type(v) in (int, float) and v >= 0 for k, v in ms.items()
    ):
        return None
    return Choice(d["backend"], {k: float(v) for k, v in ms.items()}, "cached", str(path))


def choose_cpu_backend(model: str | os.PathLike, threads: int | None) -> tuple[Choice, Backend]:
    """Pick the faster CPU backend for ``model`` (cached); returns it loaded."""
    model = Path(model)

    def load(name: str) -> Backend:
        return open_candidate(model, *CANDIDATES[name], threads)

    ir = is_format(model, "openvino")  # OpenVINO IR: only OpenVINO's precisions compete
    forced = os.environ.get(ENV, "auto").strip().lower()
    if ir and forced == "onnxruntime":
        forced = "openvino"  # an IR has one engine: its default precision
    if forced in CANDIDATES:
        return Choice(forced, {}, ENV), load(forced)
    if forced != "auto":
        raise ModelError(f"{ENV}={forced!r}: choose auto, {', '.join(CANDIDATES)}")
    if not ir and has_gpu_provider():
        return Choice("onnxruntime", {}, "GPU"), load("onnxruntime")
    if not ir and not has_openvino():
        return Choice("onnxruntime", {}, "only candidate"), load("onnxruntime")
    if not ir and has_contrib_ops(model):
        return Choice("onnxruntime", {}, CONTRIB), load("onnxruntime")
    key = cache_key(model, threads)
    cached = read_cache(model, key)
    if cached is not None:
        return cached, load(cached.backend)
    ms: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in timed_candidates(ir):  # one at a time, each in a child process
        try:
            ms[name] = time_in_child(model, name, threads)
        except ModelError as e:
            failed[name] = str(e)
    if not ms:
        raise ModelError(next(iter(failed.values())))
    best = min(ms, key=ms.__getitem__)
    choice = Choice(best, ms, "measured")
    try:
        write_json(cache_path(model), {"key": key, "backend": best, "ms": ms})
        choice.cache = str(cache_path(model))
    except OSError:
        pass  # a read-only folder: measure again next time
    return choice, load(best)


def has_contrib_ops(model: Path) -> bool:
    """The graph's metadata (its sidecar) records ONNX Runtime contrib ops in it."""
    try:
        meta = read_meta(model)
    except MetadataError:
        return False  # no sidecar: measured like any graph
    calibration = meta.extra.get("calibration")
    return isinstance(calibration, dict) and bool(calibration.get("contrib_ops"))


def timed_candidates(ir: bool = False) -> list[str]:
    """What competes: ONNX Runtime (not for an IR), OpenVINO f32, OpenVINO bf16 (BF16 CPUs)."""
    from edgevid.runtime.backends.openvino import ov_cpu_info

    bf16 = "BF16" in ov_cpu_info().capabilities
    return ([] if ir else ["onnxruntime"]) + ["openvino-fp32"] + (["openvino-bf16"] if bf16 else [])
