"""CPU inference benchmark: every edgevid path and its peers, on this CPU, in one run.

Paths (batch 1, each in its own process, all loaded at once and asked for one run in turn,
round-robin, so load that comes and goes on a shared machine hits every path alike):

    ort-fp32            edgevid FP32 graph, ONNX Runtime (edgevid's session options)
    ort-int8-static     edgevid Q/DQ INT8 graph, ONNX Runtime
    ort-int8-dynamic    edgevid dynamic INT8 graph (attention and GELU fused), ONNX Runtime
    ort-int8-dyn-plain  the dynamic INT8 graph without the fusions (edgevid before issue 16)
    ov-fp32             the FP32 graph, OpenVINO at f32 (edgevid's OpenVINO backend)
    ov-bf16             the FP32 graph, OpenVINO at bf16: edgevid's calibration-free path
    ov-qdq              edgevid's Q/DQ INT8 graph run by OpenVINO (float parts bf16)
    ov-int8-dynamic     edgevid's fused dynamic INT8 graph run by OpenVINO
    auto-int8-cpu       edgevid's int8-cpu graph (Q/DQ, each attention's Q/K/V projected apart),
                        on the backend `edgevid run --device auto` picks for it (measured once,
                        cached beside the graph): OpenVINO on this CPU, its float parts at
                        f32 or bf16 as the measurement falls (within a few percent here)
    ov-nncf-int8        peer: OpenVINO + NNCF post-training INT8 (ModelType.TRANSFORMER,
                        --nncf-clips calibration clips), only if nncf is installed; OpenVINO's
                        default precision for the float parts (bf16 where the CPU lists it)
    ov-nncf-f32         the same NNCF model with the float parts at f32, as edgevid runs its own

Reported per path: median and min-max seconds per clip, the ratio to ORT FP32, peak RSS,
GMAC/s and its share of this CPU's matmul rate at the path's precision (measured here on
the TimeSformer MLP shape 1576x768 @ 768x3072: FP32 through ONNX Runtime, bf16 through
OpenVINO, INT8 through ONNX Runtime's MatMulInteger), and accuracy against PyTorch on
real decoded clips (max logit error, cosine, top-1 agreement). Models are random-init at
full size (speed does not depend on the values). Load averages are recorded before and
after: on a loaded machine read the ratios, not the seconds.

    python benchmarks/bench_cpu.py                                 # prune8, ~5-10 min
    python benchmarks/bench_cpu.py --variants prune8,timesformer --rounds 5
    python benchmarks/bench_cpu.py --paths ort-fp32,ov-bf16 --rounds 3

Exported graphs are cached in --work (default ~/.cache/edgevid/bench_cpu). Writes
benchmarks/results/bench_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
# path -> (graph kind, engine, OpenVINO precision, rate class)
PATHS = {
    "ort-fp32": ("fp32", "onnxruntime", None, "fp32"),
    "ort-int8-static": ("int8-static", "onnxruntime", None, "int8"),
    "ort-int8-dynamic": ("int8-dynamic", "onnxruntime", None, "int8"),
    "ort-int8-dyn-plain": ("int8-dyn-plain", "onnxruntime", None, "int8"),
    "ov-fp32": ("fp32", "openvino", "fp32", "fp32"),
    "ov-bf16": ("fp32", "openvino", "bf16", "bf16"),
    "ov-qdq": ("int8-static", "openvino", "auto", "int8"),
    "ov-int8-dynamic": ("int8-dynamic", "openvino", "auto", "int8"),
    "auto-int8-cpu": ("int8-cpu", "auto", None, "int8"),
    "ov-nncf-int8": ("nncf-int8", "openvino", "auto", "int8"),
    "ov-nncf-f32": ("nncf-int8", "openvino", "fp32", "int8"),
}
PEERS = ("ov-nncf-int8", "ov-nncf-f32")  # not edgevid's
GRAPH_FILES = {  # graph kind -> file name in the variant's work folder
    "fp32": "fp32.onnx",
    "int8-static": "int8-static.onnx",
    "int8-dynamic": "int8-dynamic-fused.onnx",
    "int8-dyn-plain": "int8-dynamic.onnx",
    "nncf-int8": "nncf-int8.xml",
    "int8-cpu": "int8-cpu.onnx",
}
MLP_SHAPE = (8 * 197, 768, 3072)  # (M, K, N) of a TimeSformer-base MLP matmul at T=8, 224


# --- worker: one path in its own process ---------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    """Load one path, warm it up, answer "run" lines with seconds, then report RSS + logits."""
    from edgevid.runtime.backends import load_backend
    from edgevid.runtime.bench import peak_rss_mb

    graph, engine, precision, _ = PATHS[args.worker]
    device = {"onnxruntime": "cpu", "openvino": "openvino", "auto": "auto"}[engine]
    t0 = time.perf_counter()
    backend = load_backend(args.model, device, args.threads, precision)
    clips = np.load(args.clips)  # (N, T, 3, S, S) float32: the accuracy clips
    backend.run(clips[:1])  # warm-up
    load_s = time.perf_counter() - t0
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t = time.perf_counter()
        backend.run(clips[:1])
        print(time.perf_counter() - t, flush=True)
    logits = np.concatenate([backend.run(clips[i : i + 1]) for i in range(len(clips))])
    report = {"peak_rss_mb": peak_rss_mb(), "load_s": load_s, "name": backend.name}
    print(json.dumps(report | {"logits": logits.tolist()}), flush=True)


def start_worker(path: str, model: Path, clips: Path, threads: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        path,
        "--model",
        str(model),
        "--clips",
        str(clips),
        "--threads",
        str(threads),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{path} worker failed: {proc.stderr.read().strip()[-400:]}")
    return proc


def ask(proc: subprocess.Popen, command: str) -> str:
    """One line to a worker, its one-line answer back."""
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return proc.stdout.readline()


def measure(models: dict[str, Path], clips: Path, rounds: int, threads: int) -> dict[str, dict]:
    """Round-robin ``rounds`` timed runs over all paths (one process each)."""
    workers = {p: start_worker(p, m, clips, threads) for p, m in models.items()}
    times: dict[str, list[float]] = {p: [] for p in workers}
    for _ in range(rounds):  # round r of every path before round r + 1 of any
        for path, proc in workers.items():
            times[path].append(float(ask(proc, "run")))
    out = {}
    for path, proc in workers.items():
        report = json.loads(ask(proc, "quit"))
        proc.wait()
        t = times[path]
        out[path] = report | {
            "times_s": t,
            "median_s": float(np.median(t)),
            "min_s": float(min(t)),
            "max_s": float(max(t)),
        }
    return out


# --- preparation (torch): graphs + PyTorch reference, cached per variant -------------------
def prepare(variant: str, work: Path, accuracy_clips: int, calib_clips: int) -> dict:
    """Random-init ``variant`` (seed 0) -> FP32 / INT8 static / INT8 dynamic graphs, the
    accuracy clips as the graph takes them, PyTorch's logits on them, GMAC per clip."""
    info = work / "prepared.json"
    if info.is_file():
        prepare_graphs(work, calib_clips)  # graphs added since the folder was prepared
        return json.loads(info.read_text())
    import torch

    from edgevid._atomic import write_json
    from edgevid.core.clips import ClipSet, dataset_clips, folder_clips, graph_input
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.export.verify import torch_logits
    from edgevid.train.checkpoint import meta_for
    from edgevid.train.models import create_model
    from edgevid.train.models.profile import profile_variant

    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model(variant).eval()
    meta = meta_for(model)
    fp32 = work / GRAPH_FILES["fp32"]  # written atomically: present means complete
    if not fp32.is_file():
        torch_to_onnx(model, meta, fp32)
    real = folder_clips(MEDIA, meta)  # the real clips, decoded as the runtime does
    test = dataset_clips(synth_dataset(work.parent), meta, accuracy_clips, split="test")
    clips = ClipSet(np.concatenate([real.frames, test.frames]), [], [])
    np.save(work / "clips.npy", graph_input(clips.frames, meta))
    np.save(work / "torch_logits.npy", torch_logits(model, clips, meta, batch_size=1))
    del model
    prepare_graphs(work, calib_clips)
    d = {"variant": variant, "gmacs": profile_variant(variant).gflops}
    write_json(info, d)
    return d


def prepare_graphs(work: Path, calib_clips: int) -> None:
    """The INT8 graphs of ``work``'s FP32 graph that are missing (the calibrated ones on
    ``calib_clips`` clips of the synthetic train split)."""
    from edgevid.calib.quantize import QUANTIZERS, onnx_to_int8_dynamic
    from edgevid.core.clips import dataset_clips
    from edgevid.core.onnx_file import read_metadata

    fp32 = work / GRAPH_FILES["fp32"]
    for kind, fusions in (("int8-dynamic", None), ("int8-dyn-plain", ())):
        if not (work / GRAPH_FILES[kind]).is_file():
            onnx_to_int8_dynamic(fp32, work / GRAPH_FILES[kind], fusions=fusions)
    calib = None
    for kind in ("int8-static", "int8-cpu"):
        if not (work / GRAPH_FILES[kind]).is_file():
            if calib is None:
                root, meta = synth_dataset(work.parent), read_metadata(fp32)
                calib = dataset_clips(root, meta, calib_clips, split="train")
            QUANTIZERS[kind](fp32, work / GRAPH_FILES[kind], calib)


def synth_dataset(work: Path) -> Path:
    """A synthetic motion dataset (5 classes x 25 clips, 320x240, split 80/10/10): the
    calibration clips (train split, 100) and accuracy clips (test split) of every path."""
    root = work / "synth"
    if not root.is_dir() or not any(root.iterdir()):
        from edgevid.core.manifest import load_or_split
        from edgevid.train.synth import SynthConfig, make_synthetic_dataset

        make_synthetic_dataset(
            root, classes=5, clips_per_class=25, seed=0, config=SynthConfig(width=320, height=240)
        )
        load_or_split(root)
    return root


def prepare_nncf(work: Path, clips: int, threads: int) -> Path | None:
    """The NNCF INT8 IR of the FP32 graph (transformer preset), or None without nncf."""
    out = work / GRAPH_FILES["nncf-int8"]
    if out.is_file():
        return out
    try:
        import nncf
        import openvino as ov
    except ImportError:
        return None
    from edgevid.core.clips import dataset_clips, graph_input
    from edgevid.core.onnx_file import read_metadata

    fp32 = work / GRAPH_FILES["fp32"]
    meta = read_metadata(fp32)
    frames = dataset_clips(synth_dataset(work.parent), meta, clips, split="train").frames
    x = graph_input(frames, meta)
    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads})
    model = core.read_model(str(fp32))
    dataset = nncf.Dataset([x[i : i + 1] for i in range(len(x))])
    t0 = time.perf_counter()
    q = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(x))
    ov.save_model(q, str(out))
    meta.replace(
        precision="int8-nncf", extra={"nncf_clips": len(x), "nncf_s": time.perf_counter() - t0}
    ).save(out.with_suffix(".json"))
    return out


# --- this CPU's matmul rates ---------------------------------------------------------------
def matmul_rates(threads: int, repeats: int = 10) -> dict[str, float]:
    """GMAC/s of (M, K) @ (K, N) on the MLP shape: FP32 (ORT), bf16 (OpenVINO), INT8 (ORT
    MatMulInteger, u8 x s8), best of ``repeats``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    m, k, n = MLP_SHAPE
    rng = np.random.default_rng(0)

    def graph(op: str, a_type: int, b: np.ndarray, c_type: int = TensorProto.FLOAT) -> bytes:
        g = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["c"])],
            "mm",
            [helper.make_tensor_value_info("a", a_type, [m, k])],
            [helper.make_tensor_value_info("c", c_type, [m, n])],
            [onnx.numpy_helper.from_array(b, "b")],
        )
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    def best(run) -> float:  # GMAC/s of the fastest of `repeats` runs after a warm-up
        run()
        return m * k * n / min(seconds(run) for _ in range(repeats)) / 1e9

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    a32 = rng.standard_normal((m, k), dtype=np.float32)
    b32 = rng.standard_normal((k, n), dtype=np.float32)
    f32 = ort.InferenceSession(graph("MatMul", TensorProto.FLOAT, b32), so)
    a8 = rng.integers(0, 255, (m, k), dtype=np.uint8)
    b8 = rng.integers(-127, 127, (k, n), dtype=np.int8)
    i8 = ort.InferenceSession(graph("MatMulInteger", TensorProto.UINT8, b8, TensorProto.INT32), so)
    rates = {
        "fp32": best(lambda: f32.run(None, {"a": a32})),
        "int8": best(lambda: i8.run(None, {"a": a8})),
    }
    try:
        import openvino as ov
    except ImportError:
        return rates
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "mm.onnx").write_bytes(graph("MatMul", TensorProto.FLOAT, b32))
        model = core.read_model(str(Path(tmp) / "mm.onnx"))
    cfg = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads}
    req = core.compile_model(model, "CPU", cfg).create_infer_request()
    rates["bf16"] = best(lambda: req.infer({0: a32}))
    return rates


def seconds(run) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


# --- driver --------------------------------------------------------------------------------
def accuracy(reference: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    from edgevid.export.verify import compare

    s = compare(reference, logits)
    return {"max_abs": s["max_abs"], "cosine": s["cosine"], "top1_agreement": s["agreement"]}


def bench_variant(variant: str, args: argparse.Namespace, rates: dict[str, float]) -> list[dict]:
    from edgevid.core.formats import model_files

    work = Path(args.work) / variant
    info = run_prepare(variant, work, args)
    models = {}
    for path in args.paths:
        file = work / GRAPH_FILES[PATHS[path][0]]
        if file.is_file():
            models[path] = file
        else:
            print(f"{variant}: {path} skipped ({file.name} missing: nncf not installed?)")
    measured = measure(models, work / "clips.npy", args.rounds, args.threads)
    reference = np.load(work / "torch_logits.npy")
    base = measured.get("ort-fp32", {}).get("median_s")
    rows = []
    for path, m in measured.items():
        rate_class = PATHS[path][3]
        gmacs_per_s = info["gmacs"] / m["median_s"]
        size = sum(f.stat().st_size for f in model_files(models[path]))  # an IR: + its .bin
        row = {
            "variant": variant,
            "path": path,
            "engine": m["name"],
            "median_s": m["median_s"],
            "min_s": m["min_s"],
            "max_s": m["max_s"],
            "times_s": m["times_s"],
            "load_s": m["load_s"],
            "vs_ort_fp32": base / m["median_s"] if base else None,
            "gmacs_per_clip": info["gmacs"],
            "gmacs_per_s": gmacs_per_s,
            "rate_class": rate_class,
            "share_of_rate": gmacs_per_s / rates[rate_class] if rate_class in rates else None,
            "peak_rss_mb": m["peak_rss_mb"],
            "model_mb": size / 2**20,
            **accuracy(reference, np.asarray(m["logits"], np.float32)),
        }
        rows.append(row)
        print_row(row)
    return rows


def run_prepare(variant: str, work: Path, args: argparse.Namespace) -> dict:
    """Preparation in a child process (torch, nncf), so that none of it stays in this one."""
    cmd = [
        sys.executable,
        __file__,
        "--prepare",
        variant,
        "--work",
        str(work.parent),
        "--accuracy-clips",
        str(args.accuracy_clips),
        "--calib-clips",
        str(args.calib_clips),
        "--nncf-clips",
        str(args.nncf_clips),
        "--threads",
        str(args.threads),
    ]
    if not set(PEERS) & set(args.paths):
        cmd += ["--nncf-clips", "0"]
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads((work / "prepared.json").read_text())


def print_header() -> None:
    print(
        f"{'variant':<12}{'path':<18}{'median s':>9}{'min-max':>14}{'vs ORT32':>9}"
        f"{'GMAC/s':>8}{'of rate':>8}{'RSS MB':>8}{'max err':>9}{'cosine':>9}{'top1':>6}"
    )


def print_row(r: dict) -> None:
    share = f"{r['share_of_rate']:.0%}" if r["share_of_rate"] is not None else "-"
    ratio = f"{r['vs_ort_fp32']:.2f}x" if r["vs_ort_fp32"] else "-"
    print(
        f"{r['variant']:<12}{r['path']:<18}{r['median_s']:>9.3f}"
        f"{r['min_s']:>7.3f}-{r['max_s']:<6.3f}{ratio:>9}{r['gmacs_per_s']:>8.0f}{share:>8}"
        f"{r['peak_rss_mb']:>8.0f}{r['max_abs']:>9.2e}{r['cosine']:>9.6f}"
        f"{r['top1_agreement']:>6.0%}",
        flush=True,
    )


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """Geometric mean of the per-round ratios: two paths timed back to back in one round see
    the same load, so the ratio of each round cancels most of what a shared machine adds."""
    return float(np.exp(np.mean(np.log(np.asarray(slow) / np.asarray(fast)))))


def targets(rows: list[dict], rates: dict[str, float]) -> list[str]:
    """The issue's targets that one run can check, stated plainly."""
    lines = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        by = {r["path"]: r for r in rows if r["variant"] == variant}
        own = [p for p in by if p not in PEERS]
        best = min(own, key=lambda p: by[p]["median_s"])
        for peer in (p for p in PEERS if p in by):
            ratio = by[peer]["median_s"] / by[best]["median_s"]
            paired = paired_ratio(by[peer]["times_s"], by[best]["times_s"])
            lines.append(
                f"{variant}: edgevid's best path {best} = {ratio:.2f}x {peer} by medians, "
                f"{paired:.2f}x paired by round (target >= 1.3x): "
                f"{'met' if min(ratio, paired) >= 1.3 else 'NOT met'}"
            )
        if "ov-bf16" in by and "ort-fp32" in by:
            r = by["ov-bf16"]
            ok = r["vs_ort_fp32"] >= 2 and r["cosine"] >= 0.9999
            lines.append(
                f"{variant}: calibration-free bf16 {r['vs_ort_fp32']:.2f}x ORT FP32, "
                f"cosine {r['cosine']:.6f} to PyTorch (target >= 2x, >= 0.9999): "
                f"{'met' if ok else 'NOT met'}"
            )
        int8 = [p for p in own if PATHS[p][3] == "int8"]
        today = "ort-int8-dyn-plain" if "ort-int8-dyn-plain" in by else "ort-int8-dynamic"
        if int8 and today in by:
            b = min(int8, key=lambda p: by[p]["median_s"])
            ratio = by[today]["median_s"] / by[b]["median_s"]
            lines.append(
                f"{variant}: best INT8 path {b} = {ratio:.2f}x {today}, "
                f"{by[b]['share_of_rate']:.0%} of the INT8 matmul rate "
                f"(target >= 1.6x, >= 80%)"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", default="prune8", help="comma-separated (prune8,timesformer)")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of paths")
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per path, round-robin")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--accuracy-clips", type=int, default=4, help="real clips vs PyTorch")
    ap.add_argument("--calib-clips", type=int, default=32, help="edgevid INT8 static calibration")
    ap.add_argument("--nncf-clips", type=int, default=100, help="NNCF calibration (0: no NNCF)")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "edgevid" / "bench_cpu"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_cpu.json"))
    ap.add_argument("--worker", choices=PATHS, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--clips", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.prepare:
        work = Path(args.work) / args.prepare
        prepare(args.prepare, work, args.accuracy_clips, args.calib_clips)
        if args.nncf_clips > 0:
            prepare_nncf(work, args.nncf_clips, args.threads)
        return None
    args.paths = args.paths.split(",")
    load_before = os.getloadavg()
    rates = matmul_rates(args.threads)
    print(
        "matmul rates on 1576x768 @ 768x3072 (GMAC/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
    )
    print_header()
    rows: list[dict] = []
    for variant in args.variants.split(","):
        rows += bench_variant(variant, args, rates)
    rates_after = matmul_rates(args.threads)
    # this CPU's rate is the better of the two measurements (load only ever lowers it): the
    # shares in the JSON and the targets use it; the table above used the first
    peak = {k: max(v, rates_after.get(k, 0.0)) for k, v in rates.items()}
    for r in rows:
        if r["rate_class"] in peak:
            r["share_of_rate"] = r["gmacs_per_s"] / peak[r["rate_class"]]
    print("peak matmul rates (GMAC/s): " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    lines = targets(rows, peak)
    for line in lines:
        print(line)
    from edgevid._atomic import write_json

    machine = {"cpus": os.cpu_count(), "cpu": _cpu_name(), "platform": platform.platform()}
    machine |= {"threads": args.threads, "loadavg_before": load_before}
    machine["loadavg_after"] = os.getloadavg()  # 1/5/15 min: others' work slows every path
    rates_all = {"before": rates, "after": rates_after, "peak": peak, "shape": MLP_SHAPE}
    result = {"machine": machine, "matmul_gmacs_per_s": rates_all, "rounds": args.rounds}
    write_json(args.out, result | {"batch": 1, "rows": rows, "targets": lines})
    print(f"wrote {args.out}")


def _cpu_name() -> str:
    from edgevid.runtime.backends.choice import _cpu_name as name

    return name()


if __name__ == "__main__":
    main()
