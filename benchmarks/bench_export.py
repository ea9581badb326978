"""Export benchmark: PyTorch eager vs ONNX Runtime FP32 / FP16 / INT8 on this CPU.

For each variant (random weights at full size: speed does not depend on the values) it
exports FP32 (dynamo exporter, and the TorchScript exporter for comparison), FP16, INT8
static (minmax, calibrated on the real clips in ../shared/media) and INT8 dynamic graphs,
then measures every backend in its own subprocess so that peak RSS is that backend's
alone: seconds per clip and clips/s at batch 1, model size, peak RSS, achieved GMAC/s and
the ratio to PyTorch eager. ONNX Runtime runs through edgevid's own backend (the session
options `edgevid run` uses). It also measures this CPU's FP32 GEMM peak, the ceiling of any
FP32 engine: with eager near it, "ORT FP32 >= 2x eager" cannot happen on this machine.
All numbers come from one run.

    python benchmarks/bench_export.py                       # every variant, ~20 min
    python benchmarks/bench_export.py --variants prune4,prune8 --iters 3

Writes benchmarks/results/bench_export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
BACKENDS = (
    "eager",
    "ort-fp32",
    "ort-fp32-torchscript",  # the same model through the TorchScript exporter, for comparison
    "ort-fp16",
    "ort-int8-static",
    "ort-int8-dynamic",
)
DEFAULT_VARIANTS = ("timesformer", "prune2", "prune4", "prune6", "prune8")


# --- worker: one backend, one model, in its own process -----------------------------------
def worker(args: argparse.Namespace) -> None:
    """Load one backend, warm it up, then time one batch-1 run per "run" line on stdin.

    Every backend of a variant is loaded at once, each in its own process (so its peak RSS
    is its own), and the driver asks them for one run in turn: on a shared CPU, load that
    comes and goes then hits every backend alike instead of whichever ran at the time.
    """
    threads = os.cpu_count() or 1
    rng = np.random.default_rng(0)
    if args.backend == "eager":
        import torch

        from edgevid.train.models import create_model

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = create_model(args.variant).eval()
        cfg = model.config
        shape = (1, cfg.num_frames, 3, cfg.image_size, cfg.image_size)  # (B, T, C, H, W)
        xt = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))

        def run() -> None:
            with torch.inference_mode():
                model(pixel_values=xt)

    else:  # ONNX Runtime exactly as `edgevid run` configures it (session options included)
        from edgevid.runtime.backends.onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(args.model, device="cpu", threads=threads)
        shape = backend.session.get_inputs()[0].shape
        x = rng.standard_normal((1, *shape[1:]), dtype=np.float32)  # batch 1

        def run() -> None:
            backend.run(x)

    run()  # warm-up: allocations, kernel selection
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        run()
        print(time.perf_counter() - t0, flush=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: that one survives fork + exec, so a
    worker started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB -> MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_worker(backend: str, variant: str, model: str | None) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", backend, "--variants", variant]
    cmd += ["--model", model] if model else []
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if proc.stdout.readline().strip() != "ready":  # loaded and warmed up, one at a time
        proc.kill()
        raise RuntimeError(f"{backend} worker failed: {proc.stderr.read().strip()[-300:]}")
    return proc


def measure(models: dict[str, str | None], variant: str, iters: int) -> dict[str, dict]:
    """Round-robin ``iters`` timed runs over all backends; median, best and peak RSS each."""
    workers = {b: start_worker(b, variant, m) for b, m in models.items()}
    times: dict[str, list[float]] = {b: [] for b in workers}
    for _ in range(iters):
        for backend, proc in workers.items():
            proc.stdin.write("run\n")
            proc.stdin.flush()
            times[backend].append(float(proc.stdout.readline()))
    results = {}
    for backend, proc in workers.items():
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        rss = json.loads(proc.stdout.readline())["peak_rss_mb"]
        proc.wait()
        t = times[backend]
        results[backend] = {
            "s_per_clip": float(np.median(t)),
            "best_s_per_clip": float(min(t)),
            "peak_rss_mb": rss,
        }
    return results


# --- driver -------------------------------------------------------------------------------
def calibration_clips(meta):
    from edgevid.core.clips import ClipSet, folder_clips

    if MEDIA.is_dir():
        return folder_clips(MEDIA, meta)
    rng = np.random.default_rng(0)  # no real clips: random frames still exercise the path
    frames = rng.integers(0, 256, (4, meta.num_frames, meta.image_size, meta.image_size, 3))
    return ClipSet(frames.astype(np.uint8), [None] * 4, ["random"] * 4)


def export_all(variant: str, work: Path) -> tuple[dict[str, Path], dict[str, float], float]:
    """FP32/FP16/INT8 graphs of ``variant``; returns paths, export seconds, eager MB."""
    import torch

    from edgevid.calib.quantize import onnx_to_int8_dynamic, onnx_to_int8_static
    from edgevid.export.fp16 import onnx_to_fp16
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import meta_for
    from edgevid.train.models import create_model

    torch.manual_seed(0)
    model = create_model(variant).eval()
    meta = meta_for(model)
    eager_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    paths = {k: work / f"{variant}-{k}.onnx" for k in BACKENDS[1:]}
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    torch_to_onnx(model, meta, paths["ort-fp32"])
    seconds["ort-fp32"] = time.perf_counter() - t
    t = time.perf_counter()
    torch_to_onnx(model, meta, paths["ort-fp32-torchscript"], exporter="torchscript")
    seconds["ort-fp32-torchscript"] = time.perf_counter() - t
    del model
    t = time.perf_counter()
    onnx_to_fp16(paths["ort-fp32"], paths["ort-fp16"])
    seconds["ort-fp16"] = time.perf_counter() - t
    t = time.perf_counter()
    onnx_to_int8_static(paths["ort-fp32"], paths["ort-int8-static"], calibration_clips(meta))
    seconds["ort-int8-static"] = time.perf_counter() - t
    t = time.perf_counter()
    onnx_to_int8_dynamic(paths["ort-fp32"], paths["ort-int8-dynamic"])
    seconds["ort-int8-dynamic"] = time.perf_counter() - t
    return paths, seconds, eager_mb


def bench_variant(variant: str, iters: int, work: Path) -> list[dict]:
    from edgevid.train.models.profile import profile_variant

    paths, export_s, eager_mb = export_all(variant, work)
    gmacs = profile_variant(variant).gflops  # multiply-adds per clip
    models = {b: (str(paths[b]) if b in paths else None) for b in BACKENDS}
    measured = measure(models, variant, iters)
    rows = []
    for backend in BACKENDS:
        path = paths.get(backend)
        mb = path.stat().st_size / 2**20 if path else eager_mb
        row = {"variant": variant, "backend": backend, "model_mb": mb, "gmacs": gmacs}
        rows.append(row | {"export_s": export_s.get(backend)} | measured[backend])
        print_row(rows[-1], rows[0])
    for path in paths.values():
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
    return rows


def gemm_peak(repeats: int = 20) -> dict[str, float]:
    """This CPU's FP32 GEMM throughput (GMAC/s, best of ``repeats``) through PyTorch and
    through ONNX Runtime, on the shape of a TimeSformer-base MLP: (8 x 197 tokens, 768) x
    (768, 3072). Roughly 85% of the model's multiply-adds are GEMMs of this kind, so no FP32
    engine can run the model faster than this rate allows: the ceiling for "ORT vs eager"."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    m, k, n = 8 * 197, 768, 3072
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)

    def best(run) -> float:
        run()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        return m * k * n / min(times) / 1e9

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.set_num_threads(os.cpu_count() or 1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
        [onnx.numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return {
        "torch_gmacs": best(lambda: torch.mm(ta, tb)),
        "ort_gmacs": best(lambda: sess.run(None, {"a": a})),
    }


def print_row(row: dict, eager: dict) -> None:
    speedup = eager.get("s_per_clip", float("nan")) / row["s_per_clip"]
    row["speedup_vs_eager"] = speedup
    row["gmacs_per_s"] = row["gmacs"] / row["s_per_clip"]
    print(
        f"{row['variant']:<12}{row['backend']:<22}{row['s_per_clip']:>9.3f}"
        f"{row['best_s_per_clip']:>8.3f}{1 / row['s_per_clip']:>9.2f}{row['model_mb']:>9.1f}"
        f"{row['peak_rss_mb']:>10.0f}{row['gmacs_per_s']:>9.0f}"
        f"{speedup:>8.2f}x",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    ap.add_argument("--iters", type=int, default=5, help="timed runs per backend (median)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_export.json"))
    ap.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.backend, args.variant = args.worker, args.variants
        return worker(args)

    load_before = os.getloadavg()
    peak = gemm_peak()
    print(
        f"FP32 GEMM peak of this CPU: {peak['torch_gmacs']:.0f} GMAC/s (PyTorch), "
        f"{peak['ort_gmacs']:.0f} GMAC/s (ONNX Runtime)\n"
    )
    print(
        f"{'variant':<12}{'backend':<22}{'s/clip':>9}{'best':>8}{'clips/s':>9}{'MB':>9}"
        f"{'RSS MB':>10}{'GMAC/s':>9}{'vs eager':>9}"
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as work:
        for variant in args.variants.split(","):
            rows += bench_variant(variant, args.iters, Path(work))
    peak_after = gemm_peak()
    summary = summarise(rows, max(peak["torch_gmacs"], peak_after["torch_gmacs"]))
    for line in summary["lines"]:
        print(line)
    from edgevid._atomic import write_json

    write_json(
        args.out,
        {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                # 1/5/15-min load averages: other work on a shared CPU slows every backend
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
            },
            "fp32_gemm_peak": {"before": peak, "after": peak_after},
            "batch": 1,
            "iters": args.iters,
            "rows": rows,
            "targets": summary["targets"],
        },
    )
    print(f"wrote {args.out}")


def summarise(rows: list[dict], peak_gmacs: float) -> dict:
    """Targets: ORT fp32 >= 2x eager; the best INT8 path >= 2x ORT fp32 (per variant).

    Also the FP32 ceiling: eager's share of the GEMM peak bounds what any FP32 engine can
    gain over it (eager at 60% of peak: at most 1 / 0.6 = 1.7x)."""
    by = {(r["variant"], r["backend"]): r.get("s_per_clip") for r in rows}
    gmacs = {r["variant"]: r["gmacs"] for r in rows}
    targets, lines = {}, []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        eager, fp32 = by.get((variant, "eager")), by.get((variant, "ort-fp32"))
        int8 = min(
            (
                by[(variant, b)]
                for b in ("ort-int8-static", "ort-int8-dynamic")
                if by.get((variant, b))
            ),
            default=None,
        )
        if not (eager and fp32 and int8):
            continue
        t = {"ort_fp32_vs_eager": eager / fp32, "best_int8_vs_ort_fp32": fp32 / int8}
        t["met"] = t["ort_fp32_vs_eager"] >= 2 and t["best_int8_vs_ort_fp32"] >= 2
        t["eager_share_of_fp32_peak"] = gmacs[variant] / eager / peak_gmacs
        t["fp32_ceiling_vs_eager"] = 1 / t["eager_share_of_fp32_peak"]
        targets[variant] = t
        lines.append(
            f"{variant}: ORT fp32 {t['ort_fp32_vs_eager']:.2f}x eager (target 2x), best INT8 "
            f"{t['best_int8_vs_ort_fp32']:.2f}x ORT fp32 (target 2x): "
            f"{'met' if t['met'] else 'NOT met'}; eager runs at "
            f"{t['eager_share_of_fp32_peak']:.0%} of the FP32 GEMM peak, so no FP32 engine "
            f"can beat it by more than {t['fp32_ceiling_vs_eager']:.2f}x here"
        )
    return {"targets": targets, "lines": lines}


if __name__ == "__main__":
    main()
