"""Capacity benchmark: how many 30 fps cameras one box watches, with and without motion gating.

N live streams (files at 640x360, 30 fps, paced as cameras with ``realtime``: frames that
the loop does not take in time are dropped, as from a camera), K of them showing motion
(bikes.mp4 from ../shared/media, scaled, forward then backward) and the rest a still scene
(one frame of it with fresh camera noise in every frame), through ``--variant`` at
``--precision`` (default prune8 ``int8-cpu``; full size, random weights: speed does not
depend on the values) at one inference every 8 frames. Every (N, K, gate) runs in a fresh
process for --seconds; reported: sustained fps per stream, dropped frames, dropped windows
on the active streams (a due window that was never classified), decode-to-result latency
p95, CPU share (process CPU time / wall time, in cores), peak RSS, inferences and still
windows skipped. Each camera's queue holds one
stride of frames (``--queue-size 8``), so an inference within budget drops none.

The capacity is the largest N with no dropped window on the active streams and the p95
latency within one stride (8 frames at 30 fps = 267 ms), in the steady state: the first
2 s of each run are reported but not counted (all N first windows fall due together there).

Also measured, in this process before the runs: decode cost per frame at 360p and 720p
(the shared H.264 clips; OpenCV's FFmpeg decoder with its default threads and with one),
the motion detector's cost per frame, and two ways to serve several due streams at once
(one batch vs one request per stream, on ONNX Runtime and on OpenVINO, whose THROUGHPUT
hint runs requests in flight).

    python benchmarks/bench_capacity.py                       # N = 1 2 4 8 12 16, K = 1 2
    python benchmarks/bench_capacity.py --variant scratch --precision fp32 --device cpu
    python benchmarks/bench_capacity.py --streams 1 2 --seconds 6 --out /tmp/c.json

Writes benchmarks/results/bench_capacity.json and bench_capacity.png. Numbers come from one
run on a machine shared with others: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
RESULTS = ROOT / "benchmarks" / "results"
FPS, WIDTH, HEIGHT, EVERY = 30.0, 640, 360, 8
BUDGET_MS = EVERY / FPS * 1e3  # one stride: the latency a stream may take
QUEUE = EVERY  # frames a camera's queue holds (--queue-size): one stride, so an inference
# within budget drops no frame of the streams waiting for it
WARMUP_S = 2.0  # the start of a run, not counted against capacity: every stream's first
# window falls due at once (a gated stream counts as moving until its background is learned)


# --- inputs ----------------------------------------------------------------------------------
def make_clips(work: Path) -> dict[str, Path]:
    """The active and the still camera, 640x360 at 30 fps (MPEG-4 Part 2, OpenCV's writer)."""
    from edgevid.core._cv import cv2
    from edgevid.core.video import read_video, write_video

    paths = {"active": work / "active360.mp4", "still": work / "still360.mp4"}
    if all(p.is_file() for p in paths.values()):
        return paths
    frames, _ = read_video(MEDIA / "bikes.mp4")
    frames = [cv2.resize(f, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA) for f in frames]
    write_video(paths["active"], frames + frames[::-1], FPS)  # 500 frames: 16.7 s
    rng = np.random.default_rng(0)
    noisy = (np.clip(frames[0] + rng.normal(0, 3, frames[0].shape), 0, 255) for _ in range(500))
    write_video(paths["still"], (f.astype(np.uint8) for f in noisy), FPS)
    return paths


# --- decode and detector cost ----------------------------------------------------------------
def decode_cost(path: Path, threads: int | None, frames: int = 120) -> dict:
    """CPU and wall milliseconds per decoded frame (BGR), and the BGR -> RGB conversion."""
    from edgevid.core._cv import cv2

    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, threads]
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    n, c0, w0, convert = 0, time.process_time(), time.perf_counter(), 0.0
    while n < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        t = time.process_time()
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        convert += time.process_time() - t
        n += 1
    cpu, wall = time.process_time() - c0 - convert, time.perf_counter() - w0
    size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    cap.release()
    return {"clip": path.name, "size": size, "threads": threads or "default", "frames": n,
            "decode_cpu_ms": 1e3 * cpu / n, "decode_wall_ms": 1e3 * wall / n,
            "bgr_to_rgb_cpu_ms": 1e3 * convert / n}  # fmt: skip


def detector_cost(path: Path, frames: int = 200) -> dict:
    from edgevid.core.video import read_video
    from edgevid.runtime.motion import MotionDetector

    images, _ = read_video(path)
    images = images[:frames]
    detector = MotionDetector()
    t = time.process_time()
    for image in images:
        detector(image)
    return {"clip": path.name, "cpu_us_per_frame": 1e6 * (time.process_time() - t) / len(images)}


# --- several due streams: one batch or several requests ---------------------------------------
def serving_modes(model: Path, batch: int, repeats: int) -> list[dict]:
    """Wall time to serve ``batch`` due streams, and the mean latency each stream sees."""
    from edgevid.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from edgevid.runtime.backends.openvino import OpenVinoBackend, ov

    rows = []
    ort, vino = OnnxRuntimeBackend(model), OpenVinoBackend(model)
    meta = vino.meta
    shape = (batch, meta.num_frames, 3, meta.image_size, meta.image_size)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for name, backend in (("onnxruntime", ort), ("openvino", vino)):
        backend.run(x[:1])
        one = lambda b=backend: b.run(x[:1])  # noqa: E731
        rows.append(_timed(f"{name} one request of 1", repeats, one))
        rows.append(_timed(f"{name} one batch of {batch}", repeats, lambda b=backend: b.run(x)))
        turns = lambda b=backend: [b.run(x[i : i + 1]) for i in range(batch)]  # noqa: E731
        rows.append(_timed(f"{name} {batch} requests in turn", repeats, turns))
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(model)), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"}
    )
    requests = [compiled.create_infer_request() for _ in range(batch)]

    def in_flight() -> None:
        for i, r in enumerate(requests):
            r.start_async({0: x[i : i + 1]})
        for r in requests:
            r.wait()

    in_flight()
    rows.append(_timed(f"openvino THROUGHPUT hint, {batch} requests in flight", repeats, in_flight))
    return rows


def _timed(mode: str, repeats: int, fn) -> dict:
    """Median wall and CPU (all threads of the process) milliseconds of ``fn()``."""
    wall, cpu = [], []
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"mode": mode, "wall_ms": 1e3 * float(np.median(wall)),
            "cpu_ms": 1e3 * float(np.median(cpu)), "repeats": repeats}  # fmt: skip


def prepare_cost(path: Path, frames: int = 30) -> float:
    """CPU milliseconds of prepare_frame (resize + crop for the buffer) per 640x360 frame."""
    from edgevid.core.preprocess import prepare_frame
    from edgevid.core.video import read_video

    images, _ = read_video(path)
    t = time.process_time()
    for image in images[:frames]:
        prepare_frame(image, 224)
    return 1e3 * (time.process_time() - t) / min(frames, len(images))


def projected_capacity(
    costs: dict, cores: int, active: int, gated: bool, every: int = EVERY
) -> int:
    """Streams whose measured CPU costs fit in ``cores``: each active stream pays an
    inference per ``every`` frames and the preparation of its buffered frames (every
    ``stride``-th); a still one, gated, what the still-stream run measured per stream (decode,
    motion test and the loop's own work), else its decode and motion test."""
    per_frame = costs["decode_ms"] + costs["rgb_ms"] + costs["detector_ms"]
    still = costs.get("still_stream_cores") or FPS * per_frame / 1e3  # cores
    prepare = FPS * costs["prepare_ms"] / costs["stride"] / 1e3
    moving = still + prepare + FPS / every * costs["inference_cpu_ms"] / 1e3
    if not gated:
        still = moving
    if moving * active > cores:
        return 0
    return active + int((cores - moving * active) / still)


def projections(costs: dict, cores: int, active: list[int]) -> dict:
    """Capacity projected from this run's CPU costs (CPU-bound only: it ignores latency), at
    one inference per 8, 16 and 64 frames."""
    out = {}
    for every in (EVERY, 2 * EVERY, 8 * EVERY):
        for k in active:
            for g in ("none", "motion"):
                key = f"every={every} K={k} gate={g}"
                out[key] = projected_capacity(costs, cores, k, g == "motion", every)
    return {"capacity": out}


# --- one capacity run (in its own process) ---------------------------------------------------
def run_streams_once(
    model: str, clips: dict[str, str], n: int, k: int, gate: str, seconds: float, device: str
) -> dict:
    from edgevid.runtime.bench import peak_rss_mb
    from edgevid.runtime.capture import CaptureConfig
    from edgevid.runtime.classifier import Classifier
    from edgevid.runtime.streamer import Streamer

    clf = Classifier(model, device=device)
    meta = clf.meta
    warm = np.zeros((1, meta.num_frames, meta.image_size, meta.image_size, 3), np.uint8)
    clf.run(clf.to_input(warm))  # first inference compiles kernels: not a camera's cost
    sources = [clips["active"]] * k + [clips["still"]] * (n - k)
    frames = int(seconds * FPS)
    streamer = Streamer(
        sources, clf, every=EVERY, gate=gate, max_frames=frames,
        capture=CaptureConfig(queue_size=QUEUE, realtime=True),
    )  # fmt: skip
    results: dict[int, list] = {i: [] for i in range(n)}
    c0, t0, stat0 = os.times(), time.perf_counter(), _stat()
    last = (c0, t0)  # CPU and wall time of the latest inference
    warm_drops = None  # frames each stream had dropped when the warm-up ended
    for step in streamer.steps():
        for r in step.results:
            results[r.stream].append((r.frame, r.latency_ms["total"]))
        if step.results:
            last = (os.times(), time.perf_counter())
        if warm_drops is None and time.perf_counter() - t0 >= WARMUP_S:
            warm_drops = [lane.source.frames_dropped for lane in streamer.lanes]
    warm_drops = warm_drops or [0] * n
    warm = int(WARMUP_S * FPS)  # first frame index of the steady state
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = _cpu(c0, c1)
    quiet = time.perf_counter() - last[1]  # seconds since the latest inference
    streams = []
    for i, lane in enumerate(streamer.lanes):
        counts, got = lane.counts, results[i]
        seen = lane.newest.index + 1 if lane.newest is not None else 0  # frames it covered
        frames = [f for f, _ in got]
        streams.append({
            "active": i < k, "fps": counts.frames_read / wall, "frames": seen,
            "frames_dropped": lane.source.frames_dropped,
            "frames_dropped_steady": lane.source.frames_dropped - warm_drops[i],
            "inferences": counts.inferences, "windows_skipped": counts.windows_skipped,
            "windows_dropped": _dropped_windows(frames, seen, lane.buffer),
            "windows_dropped_steady": _dropped_windows(frames, seen, lane.buffer, warm),
            "idle_s": round(counts.idle_s, 2), "result_frames": frames,
            "latency_ms": [ms for f, ms in got if f >= warm],
        })  # fmt: skip
    active = [s for s in streams if s["active"]]
    latency = [ms for s in active for ms in s.pop("latency_ms")]
    for s in streams:
        s.pop("latency_ms", None)
    return {
        "streams": n, "active": k, "gate": gate, "wall_s": wall, "load_1m": os.getloadavg()[0],
        "fps_per_stream_min": min(s["fps"] for s in streams),
        "fps_per_stream_mean": float(np.mean([s["fps"] for s in streams])),
        "frames_dropped": sum(s["frames_dropped"] for s in streams),
        "frames_dropped_steady": sum(s["frames_dropped_steady"] for s in streams),
        "windows_dropped_active": sum(s["windows_dropped"] for s in active),
        "windows_dropped_active_steady": sum(s["windows_dropped_steady"] for s in active),
        "latency_p95_ms": float(np.percentile(latency, 95)) if latency else None,
        "cpu_cores": cpu / wall, "peak_rss_mb": peak_rss_mb(),
        "steal_share": steal_share(stat0, _stat()),
        "cpu_cores_after_last_inference": _cpu(last[0], c1) / quiet if quiet > 1 else None,
        "inferences": sum(s["inferences"] for s in streams),
        "windows_skipped": sum(s["windows_skipped"] for s in streams),
        "per_stream": streams,
    }  # fmt: skip


def _stat() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs (/proc/stat): on a VM, time the host gave away."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(a: tuple[int, int], b: tuple[int, int]) -> float | None:
    return (b[0] - a[0]) / (b[1] - a[1]) if b[1] > a[1] else None


def _cpu(a, b) -> float:
    return (b.user - a.user) + (b.system - a.system)


def _dropped_windows(frames: list[int], seen: int, buffer, start: int = 0) -> int:
    """Due windows never classified: a window is due every EVERY frames once the buffer
    first fills, so a stretch of n * EVERY frames between consecutive results (or before the
    first, or after the last of the ``seen`` frames) lost n - 1 windows. Frames a camera
    dropped shift the schedule without losing a window unless a whole stride went
    unclassified. Only stretches whose first due window is at frame ``start`` or later
    count."""
    first = (buffer.num_frames - 1) * buffer.stride  # where the first window is due
    edges = [first - EVERY, *sorted(frames), seen - 1 + EVERY]
    return sum((b - a) // EVERY - 1 for a, b in itertools.pairwise(edges) if a + EVERY >= start)


def _child(args: argparse.Namespace, n: int, k: int, gate: str, clips: dict) -> dict:
    spec = json.dumps({"model": str(args.model), "clips": {a: str(p) for a, p in clips.items()},
                       "n": n, "k": k, "gate": gate, "seconds": args.seconds,
                       "device": args.device})  # fmt: skip
    proc = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise SystemExit(f"capacity run N={n} K={k} {gate} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def still_cost(args: argparse.Namespace, clips: dict, n: int) -> dict:
    """``n`` still streams, gated: the CPU they cost once their warm-up windows are done."""
    row = _child(args, n, 0, "motion", clips)
    cores = row["cpu_cores_after_last_inference"]
    return {"streams": n, "cpu_cores": cores, "per_stream_share_of_a_core": cores and cores / n,
            "load_1m": row["load_1m"], "inferences": row["inferences"],
            "frames_dropped": row["frames_dropped"]}  # fmt: skip


def still_marginal(rows: list[dict]) -> dict | None:
    """What one more still stream adds to a gated run that keeps up: the slope of the CPU
    share (cores) over N, least squares over the gated runs with the fewest active streams.
    The still-only run's share per stream also carries the loop's own cost, spread over
    its few streams; the slope is the cost of a camera added to a box."""
    k = min((r["active"] for r in rows if r["gate"] == "motion"), default=None)
    runs = [r for r in rows if r["gate"] == "motion" and r["active"] == k and _keeps_up(r)]
    if len({r["streams"] for r in runs}) < 3:
        return None
    slope = float(np.polyfit([r["streams"] for r in runs], [r["cpu_cores"] for r in runs], 1)[0])
    return {"active": k, "streams": sorted(r["streams"] for r in runs),
            "cores_per_still_stream": slope}  # fmt: skip


def capacity(rows: list[dict], k: int, gate: str) -> int:
    ok = [r["streams"] for r in rows if r["active"] == k and r["gate"] == gate and _keeps_up(r)]
    return max(ok, default=0)


def _keeps_up(r: dict) -> bool:
    p95 = r["latency_p95_ms"]
    return r["windows_dropped_active_steady"] == 0 and p95 is not None and p95 <= BUDGET_MS


# --- report ----------------------------------------------------------------------------------
def report(caps: dict, projected: dict) -> None:
    for name, c in caps.items():
        print(f"capacity {name}: {c} streams measured")
    for name, c in projected["capacity"].items():
        print(f"projected from CPU costs, {name}: {c} streams")


def plot(rows: list[dict], out: Path, model: str, cpu: str) -> None:
    """Per K: dropped windows (top) and p95 latency against the budget (bottom) over N, gated
    and ungated; the capacity (both within bounds) marked on each gated and ungated line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ks = sorted({r["active"] for r in rows})
    fig, axes = plt.subplots(2, len(ks), figsize=(5 * len(ks), 7), sharex="col", squeeze=False)
    for col, k in enumerate(ks):
        top, bottom = axes[0][col], axes[1][col]
        for gate, style in (("none", "o--"), ("motion", "s-")):
            mine = sorted((r for r in rows if r["active"] == k and r["gate"] == gate),
                          key=lambda r: r["streams"])  # fmt: skip
            if not mine:
                continue
            n = [r["streams"] for r in mine]
            line = top.plot(n, [r["windows_dropped_active_steady"] for r in mine], style,
                            label=f"gate {gate}: capacity {capacity(rows, k, gate)}")  # fmt: skip
            bottom.plot(n, [r["latency_p95_ms"] or float("nan") for r in mine], style,
                        color=line[0].get_color(), label=f"gate {gate}")  # fmt: skip
        bottom.axhline(BUDGET_MS, color="red", ls=":", lw=1, label=f"budget {BUDGET_MS:.0f} ms")
        bottom.set_yscale("log")
        bottom.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        bottom.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        bottom.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        top.set_title(f"K = {k} active stream{'s' * (k > 1)}, the rest still")
        bottom.set_xlabel("streams (640x360, 30 fps)")
        bottom.set_xticks(sorted({r["streams"] for r in rows if r["active"] == k}))
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"dropped windows, active streams (after {WARMUP_S:g} s)")
    axes[1][0].set_ylabel("p95 decode-to-result latency, ms")
    fig.suptitle(f"{model} on {cpu}: one inference per 8 frames, each (N, K, gate) one run")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    ap.add_argument("--active", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=12.0, help="Stream time per run.")
    ap.add_argument("--still-streams", type=int, default=8, help="Streams of the still-cost run.")
    ap.add_argument("--device", default="openvino", help="Inference device (edgevid --device).")
    ap.add_argument("--variant", default="prune8", help="Registry variant (full size).")
    ap.add_argument("--precision", default="int8-cpu", help="Its graph's precision.")
    ap.add_argument("--model", type=Path, help="A graph to use instead [exported to --work].")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks/.cache")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_capacity.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true",
                    help="Recompute the projections and the plot from --out's runs.")  # fmt: skip
    args = ap.parse_args()
    if args.report:
        out = json.loads(args.out.read_text())
        out["costs_cpu_ms"]["still_stream_cores"] = out["still_streams"][
            "per_stream_share_of_a_core"
        ]
        out["capacity_projected"] = projections(out["costs_cpu_ms"], out["cores"], args.active)
        out["still_stream_marginal"] = still_marginal(out["runs"])
        report(out["capacity"], out["capacity_projected"])
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        plot(out["runs"], args.out.with_suffix(".png"), out["model"], out["cpu"])
        return
    if args.child:
        spec = json.loads(args.child)
        run = run_streams_once(spec["model"], spec["clips"], spec["n"], spec["k"],
                               spec["gate"], spec["seconds"], spec["device"])  # fmt: skip
        print(json.dumps(run))
        return
    if args.model is None:  # exported once, as bench_runtime.py does
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_runtime import export_graphs

        args.model = export_graphs(args.variant, [args.precision], args.work)[args.precision]
    from edgevid.plan.run import machine_info

    load_start, stat_start = list(os.getloadavg()), _stat()
    clips = make_clips(args.work)
    videos = (clips["active"], MEDIA / "bikes.mp4", MEDIA / "bigbuckbunny.mp4")
    decode = [decode_cost(v, t) for v in videos for t in (None, 1)]
    detector = [detector_cost(p) for p in (clips["active"], clips["still"])]
    serving = serving_modes(args.model, 2, 5)
    from edgevid.core.meta import ModelMeta

    meta = ModelMeta.load(args.model.with_suffix(".json"))
    costs = {  # CPU ms, for the capacity projection: the benchmark's own 360p streams
        "decode_ms": min(d["decode_cpu_ms"] for d in decode[:2]),
        "rgb_ms": decode[0]["bgr_to_rgb_cpu_ms"], "prepare_ms": prepare_cost(clips["active"]),
        "stride": meta.sampling.stream_stride(FPS),
        "detector_ms": max(d["cpu_us_per_frame"] for d in detector) / 1e3,
        "inference_cpu_ms": serving[0 if args.device != "openvino" else 3]["cpu_ms"],
    }  # fmt: skip
    print(f"{'clip':<18}{'size':>10}{'threads':>9}{'decode cpu ms':>15}{'wall ms':>9}{'rgb ms':>8}")
    for d in decode:
        print(f"{d['clip']:<18}{d['size']:>10}{d['threads']!s:>9}{d['decode_cpu_ms']:>15.2f}"
              f"{d['decode_wall_ms']:>9.2f}{d['bgr_to_rgb_cpu_ms']:>8.2f}")  # fmt: skip
    for d in detector:
        print(f"motion detector on {d['clip']}: {d['cpu_us_per_frame']:.0f} us CPU per frame")
    for s in serving:
        print(f"{s['mode']:<52}{s['wall_ms']:>9.1f} ms")
    still = still_cost(args, clips, args.still_streams)
    costs["still_stream_cores"] = still["per_stream_share_of_a_core"]
    share = 100 * (still["per_stream_share_of_a_core"] or 0)
    print(f"{still['streams']} still streams, gated, after their warm-up window: "
          f"{still['cpu_cores'] or 0:.3f} cores ({share:.1f}% of a core per stream)",
          flush=True)  # fmt: skip
    rows = []
    for k in args.active:
        for gate in ("none", "motion"):
            failed = 0
            for n in (n for n in args.streams if n >= k):
                if failed >= 2:  # past its capacity twice: larger N only drops more
                    break
                row = _child(args, n, k, gate, clips)
                failed += not _keeps_up(row)
                rows.append(row)
                print(f"N={n:>2} K={k} gate {gate:<6} fps/stream {row['fps_per_stream_min']:5.1f}"
                      f"  dropped frames {row['frames_dropped_steady']:>5}  dropped windows "
                      f"{row['windows_dropped_active_steady']:>3}  p95 "
                      f"{row['latency_p95_ms'] or 0:7.1f}"
                      f" ms  cpu {row['cpu_cores']:.2f} cores  rss {row['peak_rss_mb']:.0f} MB",
                      flush=True)  # fmt: skip
    gates = ("none", "motion")
    caps = {f"K={k} gate={g}": capacity(rows, k, g) for k in args.active for g in gates}
    projected = projections(costs, os.cpu_count() or 1, args.active)
    report(caps, projected)
    out = {
        "cpu": machine_info()["cpu"], "cores": os.cpu_count(),
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "steal_share": steal_share(stat_start, _stat()),  # CPU time the VM's host took
        "model": f"{args.variant} {args.precision}", "device": args.device,
        "graph": f"{args.model.name} (full size, random weights)",
        "stream": {"fps": FPS, "size": f"{WIDTH}x{HEIGHT}", "every": EVERY,
                   "budget_ms": BUDGET_MS, "seconds": args.seconds},
        "decode": decode, "detector": detector, "serving_two_due_streams": serving,
        "costs_cpu_ms": costs, "still_streams": still,
        "still_stream_marginal": still_marginal(rows),
        "capacity": caps, "capacity_projected": projected, "runs": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    plot(rows, args.out.with_suffix(".png"), out["model"], out["cpu"])
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
