"""GPU smoke test: the CUDA layer of edgevid's TensorRT backend, and engines where TensorRT is.

One command on any CUDA machine, a few minutes at most:

    python benchmarks/gpu_smoke.py [--json benchmarks/results/gpu_smoke.json]

1. **CUDA layer** (always, through the backend's own wrapper, ``tensorrt._cuda()``):
   device facts (name, compute capability, driver/runtime), pinned host buffers, async
   host -> device -> host copies on the backend's stream for every I/O dtype an engine can
   have (float32, float16, uint8), the FP16 input cast the backend does into pinned memory,
   stream sync, and 200 allocate/free cycles with the device's free memory checked after.
2. **TensorRT** (where ``tensorrt`` imports): a tiny model exported (random weights,
   ``edgevid export --fp16 --int8 static`` on a synthetic calibration set; needs torch) or
   ``--onnx`` graphs given; each compiled with ``edgevid compile`` (which compares one clip
   with ONNX Runtime's CPU provider before it keeps an engine), run through
   ``TensorRTBackend`` on two clips against ONNX Runtime CPU within the precision table's
   tolerance, and compiled again, which must answer from the engine cache. Without
   TensorRT each of these rows says so.

Prints a table and writes JSON. Without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgevid.core.precision import PRECISIONS  # noqa: E402
from edgevid.errors import EdgevidError  # noqa: E402
from edgevid.runtime.backends import tensorrt as trt_backend  # noqa: E402

CLIP = (2, 8, 3, 224, 224)  # (B, T, C, H, W): two cameras' clips, the graph input of a variant
CYCLES = 200  # allocate/free cycles of the leak check


@dataclass
class Check:
    name: str  # what was checked
    status: str  # "ok", "FAIL" or "skip"
    detail: str  # the measured facts, or why it failed / was skipped
    ms: float  # wall time of the check


def timed(name: str, fn: Callable[[], str], rows: list[Check]) -> None:
    """Run one check; an exception is that check's failure, not the script's."""
    t0 = time.perf_counter()
    try:
        status, detail = "ok", fn()
    except Exception as exc:  # a smoke test reports every failure and goes on
        status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
    rows.append(Check(name, status, detail, round((time.perf_counter() - t0) * 1e3, 2)))


def device_facts(cuda) -> dict:
    rt = cuda.rt
    device = cuda._call(rt.cudaGetDevice())
    props = cuda._call(rt.cudaGetDeviceProperties(device))
    free, total = cuda._call(rt.cudaMemGetInfo())
    return {
        "name": cuda.gpu_name(),
        "compute_capability": f"{props.major}.{props.minor}",
        "driver": cuda._call(rt.cudaDriverGetVersion()),
        "runtime": cuda._call(rt.cudaRuntimeGetVersion()),
        "memory_gib": round(total / 2**30, 1),
        "free_gib": round(free / 2**30, 1),
    }


def round_trip(cuda, dtype: np.dtype, shape: tuple[int, ...] = CLIP) -> str:
    """Host -> device -> host through pinned buffers on the backend's stream: bytes equal."""
    rng = np.random.default_rng(0)
    src = cuda.pinned(shape, dtype)
    dst = cuda.pinned(shape, dtype)
    nbytes = trt_backend.io_nbytes(shape, dtype)
    dev = cuda.device(nbytes)
    try:
        if np.dtype(dtype).kind == "u":
            src[...] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            src[...] = rng.standard_normal(shape).astype(dtype)
        dst[...] = 0
        t0 = time.perf_counter()
        cuda.to_device(dev, src, nbytes)
        cuda.to_host(dst, dev, nbytes)
        cuda.sync()
        seconds = time.perf_counter() - t0
        if not np.array_equal(src.view(np.uint8), dst.view(np.uint8)):
            raise AssertionError("bytes differ after the round trip")
        return f"{nbytes / 2**20:.1f} MiB each way, {2 * nbytes / seconds / 1e9:.1f} GB/s"
    finally:
        cuda.release([src, dst], [dev])


def fp16_input(cuda) -> str:
    """The backend's FP16 input path: float32 clips cast on assignment into a float16 pinned
    buffer (``_host_in[:b] = x``), copied to the device and back: equal to numpy's cast."""
    x = np.random.default_rng(1).standard_normal(CLIP).astype(np.float32)
    host = cuda.pinned(CLIP, np.float16)
    back = cuda.pinned(CLIP, np.float16)
    nbytes = trt_backend.io_nbytes(CLIP, np.float16)
    dev = cuda.device(nbytes)
    try:
        host[:1] = x[:1]  # one camera of a two-row buffer, as a padded batch
        cuda.to_device(dev, host, host[:1].nbytes)
        cuda.to_host(back, dev, host[:1].nbytes)
        cuda.sync()
        if not np.array_equal(back[:1], x[:1].astype(np.float16)):
            raise AssertionError("FP16 input differs from numpy's float32 -> float16 cast")
        err = float(np.abs(back[:1].astype(np.float32) - x[:1]).max())
        return f"{host[:1].nbytes} bytes, max |fp16 - fp32| {err:.2e}"
    finally:
        cuda.release([host, back], [dev])


def alloc_cycles(cuda) -> str:
    """CYCLES x (pinned in/out + device in/out, then free): the device's free memory after
    is what it was before, within one allocation's size."""
    rt = cuda.rt
    shape, dtype = CLIP, np.float32
    nbytes = trt_backend.io_nbytes(shape, dtype)
    free_before = cuda._call(rt.cudaMemGetInfo())[0]
    for _ in range(CYCLES):
        host = [cuda.pinned(shape, dtype), cuda.pinned((shape[0], 400), dtype)]
        device = [cuda.device(nbytes), cuda.device(shape[0] * 400 * 4)]
        cuda.release(host, device)
    free_after = cuda._call(rt.cudaMemGetInfo())[0]
    lost = free_before - free_after
    if lost > 2 * nbytes:
        raise AssertionError(f"{lost / 2**20:.1f} MiB of device memory not returned")
    return f"{CYCLES} cycles of {2 * nbytes / 2**20:.1f} MiB, device memory lost {lost} bytes"


ENGINE_ROWS = ("fp32", "fp16", "int8-static")  # the precisions of the engine rows


def edgevid(*args: str, timeout: float = 900) -> str:
    """``edgevid ARGS`` in a child process: its stdout, or the failure's last stderr line."""
    r = subprocess.run([sys.executable, "-m", "edgevid", *args], capture_output=True,
                       text=True, timeout=timeout)  # fmt: skip
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines() or [f"exit {r.returncode}"]
        raise RuntimeError(lines[-1])
    return r.stdout


def tiny_graphs(work: Path) -> dict[str, Path]:
    """FP32 / FP16 / INT8 (static Q/DQ) graphs of tiny-prune8, random weights, calibrated on
    a small synthetic set: edgevid's own export (needs torch)."""
    edgevid("data", "synth", str(work / "calib"), "--clips-per-class", "4")
    edgevid("export", "--variant", "tiny-prune8", "--random-init", "--out", str(work / "x"),
            "--fp16", "--int8", "static", "--calib-data", str(work / "calib"))  # fmt: skip
    graphs = {p: work / "x" / f"tiny-prune8{PRECISIONS[p].suffix}.onnx" for p in ENGINE_ROWS}
    return {p: g for p, g in graphs.items() if g.is_file()}


def engine_run(graph: Path, cache: Path) -> str:
    """Compile ``graph`` into ``cache``, run the engine on two clips, compare with ONNX
    Runtime CPU within the graph's tolerance; a second compile must be a cache hit."""
    from edgevid.core.precision import get_precision
    from edgevid.runtime.backends.onnx_engine import graph_meta, probe_clip
    from edgevid.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from edgevid.runtime.backends.trt_plan import parity_problem

    out = edgevid("compile", str(graph), "--cache-dir", str(cache))
    engine = Path(out.split()[-1])
    meta = graph_meta(graph)
    x = probe_clip(meta, rows=2, seed=1)  # not the clip compile checked
    with OnnxRuntimeBackend(graph, device="cpu") as reference:
        expected = reference.run(x)
    with trt_backend.TensorRTBackend(engine) as backend:
        got = backend.run(x)
    problem = parity_problem(expected, got, get_precision(meta.precision).tolerance)
    if problem:
        raise AssertionError(f"engine vs ONNX Runtime CPU: {problem}")
    cosine = float(np.mean(np.sum(got * expected, 1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))))  # fmt: skip
    again = edgevid("compile", str(graph), "--cache-dir", str(cache))
    if not again.startswith("cached"):
        raise AssertionError(f"second compile built again: {again.strip()}")
    return f"{engine.name}: cosine {cosine:.5f} to ONNX Runtime CPU; second compile: cached"


def tensorrt_rows(rows: list[Check], onnx: list[Path]) -> None:
    """Engine checks where TensorRT imports; one skip row per check where it does not."""
    try:
        import tensorrt
    except ImportError:
        for p in ENGINE_ROWS:
            rows.append(Check(f"engine {p}", "skip", "TensorRT not installed on this machine", 0))
        return
    with tempfile.TemporaryDirectory(prefix="gpu-smoke-") as tmp:
        work = Path(tmp)
        graphs: dict[str, Path] = {}
        if onnx:
            from edgevid.runtime.backends.onnx_engine import graph_meta

            graphs = {graph_meta(g).precision: g for g in onnx}
        else:

            def export() -> str:
                graphs.update(tiny_graphs(work))
                return ", ".join(graphs)

            timed("export tiny graphs", export, rows)
        for p, graph in graphs.items():
            timed(f"engine {p} (TensorRT {tensorrt.__version__})",
                  lambda g=graph: engine_run(g, work / "cache"), rows)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    ap.add_argument("--onnx", type=Path, nargs="*", default=[],
                    help="graphs to build engines of (default: tiny ones made here)")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        cuda = trt_backend._cuda()
        facts = device_facts(cuda)
    except (EdgevidError, ImportError, OSError, RuntimeError) as exc:
        print(f"gpu_smoke: no CUDA device or library here ({exc}); nothing to check")
        return 0
    rows: list[Check] = []
    for dtype in (np.float32, np.float16, np.uint8):
        timed(f"round trip {np.dtype(dtype).name}", lambda d=dtype: round_trip(cuda, d), rows)
    timed("fp16 input cast", lambda: fp16_input(cuda), rows)
    timed("alloc/free cycles", lambda: alloc_cycles(cuda), rows)
    timed("stream sync", lambda: (cuda.sync(), "synchronised")[1], rows)
    cuda.close()
    tensorrt_rows(rows, args.onnx)

    print(f"GPU: {facts['name']} (sm {facts['compute_capability']}), CUDA driver "
          f"{facts['driver']}, runtime {facts['runtime']}, {facts['memory_gib']} GiB")  # fmt: skip
    width = max(len(r.name) for r in rows)
    for r in rows:
        print(f"{r.name:<{width}}  {r.status:<4}  {r.ms:>8.1f} ms  {r.detail}")
    failed = [r.name for r in rows if r.status == "FAIL"]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        report = {
            "device": facts,
            "host": {"python": platform.python_version(), "machine": platform.machine()},
            "cuda_wrapper": type(cuda).__name__,
            "checks": [asdict(r) for r in rows],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
