"""Runtime benchmark: the real-time loop with prune8 graphs on this CPU.

Does prune8 INT8 keep up with a 30 fps camera at one inference every 8 frames? For each
graph (prune8 at full size, random weights: speed does not depend on the values) it runs
``edgevid bench``'s measurement: the whole loop (decode -> rolling buffer -> inference)
over a real clip read as fast as it decodes, each model in a fresh process so peak RSS
is its own, and reports end-to-end fps, time per stage, the runtime's own overhead
(decode + preprocess + buffer; goal <= 10% of inference) and peak RSS (goal <= model
file size + 300 MB). All numbers come from one run.

    python benchmarks/bench_runtime.py                        # fp32, int8 static + dynamic
    python benchmarks/bench_runtime.py --variant prune4 --graphs fp32
    python benchmarks/bench_runtime.py --preprocess-only    # what the reference filter costs

The preprocessing table compares, per frame of the three shared clips, ``prepare_frame``
(Pillow's antialiased shrink, as the Hugging Face processor does it; computed only for the
kept crop) with the shortcut it replaced (crop the centre square, then OpenCV INTER_AREA),
timed interleaved in one process, and their distance from the processor itself.

Graphs are exported once into --work (reused when present). Writes
benchmarks/results/bench_runtime.json. This script imports torch (to export); the
runtime it measures does not.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
GRAPHS = ("fp32", "int8-static", "int8-dynamic", "int8-cpu", "int8-static-raw")


def export_graphs(variant: str, graphs: list[str], work: Path) -> dict[str, Path]:
    """FP32 (+ INT8) graphs of ``variant`` at full size with random weights, cached in work."""
    work.mkdir(parents=True, exist_ok=True)
    from edgevid.core.formats import graph_name

    # the names `edgevid export` gives them (a "-raw" graph: --raw-input)
    paths = {
        g: work / graph_name(variant, g.removesuffix("-raw"), g.endswith("-raw")) for g in graphs
    }
    fp32s = {raw: work / graph_name(variant, raw_input=raw) for raw in (False, True)}
    needed = [g for g in graphs if not paths[g].is_file()]
    if not needed:
        return paths
    import torch

    from edgevid.calib.quantize import QUANTIZERS
    from edgevid.core.clips import folder_clips
    from edgevid.core.meta import ModelMeta
    from edgevid.core.precision import PRECISIONS
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import meta_for
    from edgevid.train.models import create_model

    torch.manual_seed(0)
    model = create_model(variant).eval()
    meta = meta_for(model)
    for raw in sorted({g.endswith("-raw") for g in needed}):  # the FP32 graphs they start from
        if not fp32s[raw].is_file():
            print(f"exporting {fp32s[raw].name} ...", flush=True)
            torch_to_onnx(model, meta, fp32s[raw], raw_input=raw)
    del model
    for g in needed:
        src, precision = fp32s[g.endswith("-raw")], g.removesuffix("-raw")
        if precision == "fp32":
            continue
        args = ()
        if PRECISIONS[precision].calibrated:
            print(f"calibrating {paths[g].name} on {MEDIA} ...", flush=True)
            args = (folder_clips(MEDIA, ModelMeta.load(src.with_suffix(".json")), num_clips=3),)
        else:
            print(f"quantizing {paths[g].name} ...", flush=True)
        QUANTIZERS[precision](src, paths[g], *args)
    return paths


def _shortcut(frame, size: int = 224):
    """The pre-0.x prepare_frame: crop the centre square, then one INTER_AREA resize."""
    import cv2

    from edgevid.core.preprocess import center_crop, crop_box, resize_short_side

    top, left, h, w = crop_box(*frame.shape[:2], size)
    if h > size:
        square = frame[top : top + h, left : left + w]
        return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    return center_crop(resize_short_side(frame, size), size)


def preprocess_cost(repeats: int = 3) -> list[dict]:
    """ms/frame of prepare_frame vs the shortcut, and each one's distance from the HF
    processor in 8-bit levels (mean, p99 over every frame), per shared clip."""
    import time

    import numpy as np

    from edgevid.core.meta import KINETICS_MEAN, KINETICS_STD
    from edgevid.core.preprocess import normalize_clip, prepare_frame
    from edgevid.core.video import read_video

    try:
        import transformers

        proc = transformers.VideoMAEImageProcessorPil(
            image_mean=list(KINETICS_MEAN), image_std=list(KINETICS_STD)
        )
    except (ImportError, AttributeError):
        proc = None
    level = 1 / 255 / KINETICS_STD[0]
    rows = []
    for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"):
        frames, _ = read_video(MEDIA / name)
        times: dict[str, list[float]] = {"reference": [], "shortcut": []}
        for _ in range(repeats):  # interleaved, so both see the same machine load
            for f in frames:
                for key, fn in (("reference", prepare_frame), ("shortcut", _shortcut)):
                    t0 = time.perf_counter()
                    fn(f, 224)
                    times[key].append(time.perf_counter() - t0)
        row = {"clip": name, "frames": len(frames), "size": list(frames.shape[1:3])}
        for key in times:
            row[f"{key}_ms"] = 1000 * float(np.median(times[key]))
        if proc is not None:
            for key, fn in (("reference", prepare_frame), ("shortcut", _shortcut)):
                diffs = []
                for i in range(0, len(frames), 32):
                    chunk = list(frames[i : i + 32])
                    ref = proc(chunk, return_tensors="np")["pixel_values"][0]
                    ours = normalize_clip(np.stack([fn(f, 224) for f in chunk]),
                                          KINETICS_MEAN, KINETICS_STD)  # fmt: skip
                    diffs.append(np.abs(ours - ref).ravel() / level)
                d = np.concatenate(diffs)
                row[f"{key}_levels_mean"] = float(d.mean())
                row[f"{key}_levels_p99"] = float(np.percentile(d, 99))
        rows.append(row)
    return rows


def format_preprocess(rows: list[dict]) -> str:
    lines = ["| clip | size | frames | ms/frame reference | ms/frame shortcut | ratio | "
             "levels vs HF (mean / p99) reference | shortcut |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        lv = {k: f"{r.get(k + '_levels_mean', float('nan')):.2f} / "
                 f"{r.get(k + '_levels_p99', float('nan')):.0f}"
              for k in ("reference", "shortcut")}  # fmt: skip
        lines.append(
            f"| {r['clip']} | {r['size'][1]}x{r['size'][0]} | {r['frames']} | "
            f"{r['reference_ms']:.2f} | {r['shortcut_ms']:.2f} | "
            f"{r['reference_ms'] / r['shortcut_ms']:.1f}x | {lv['reference']} | {lv['shortcut']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="prune8")
    ap.add_argument("--graphs", default="fp32,int8-static,int8-dynamic,int8-static-raw",
                    help=f"comma-separated, from {', '.join(GRAPHS)}")  # fmt: skip
    ap.add_argument("--video", default=str(MEDIA / "bikes.mp4"))
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--target-fps", type=float, default=30.0)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".cache"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_runtime.json"))
    ap.add_argument("--preprocess-only", action="store_true", help="only the preprocess table")
    a = ap.parse_args()

    from edgevid._atomic import write_json

    print("preprocessing: reference filter vs the crop-first shortcut ...", flush=True)
    pre = preprocess_cost()
    print(format_preprocess(pre))
    if a.preprocess_only:
        out = Path(a.out).with_name("bench_preprocess.json")
        write_json(out, {"load_average_at_end": os.getloadavg(), "results": pre})
        print(f"\nwrote {out}")
        return
    from edgevid.runtime.bench import bench_models, format_table

    graphs = [g.strip() for g in a.graphs.split(",") if g.strip()]
    unknown = set(graphs) - set(GRAPHS)
    if unknown:
        ap.error(f"unknown graphs {sorted(unknown)}; choose from {', '.join(GRAPHS)}")
    paths = export_graphs(a.variant, graphs, Path(a.work))
    rows = []
    for g in graphs:
        print(f"benchmarking {paths[g].name} on {Path(a.video).name} ...", flush=True)
        rows += bench_models(
            [paths[g]], a.video, every=a.every, max_frames=a.max_frames, target_fps=a.target_fps
        )
    print()
    print(format_table(rows))
    print()
    for r in rows:
        st = r["stages_ms"]
        print(
            f"{Path(r['model']).name}: inference p50 {st['inference']['p50']:.0f} ms, "
            f"p95 {st['inference']['p95']:.0f} ms; decode p50 {st['decode']['p50']:.2f} ms/frame; "
            f"preprocess p50 {st['preprocess']['p50']:.2f} ms; overhead "
            f"{100 * r['overhead_ratio']:.1f}% of inference "
            f"({'ok' if r['overhead_ok'] else 'OVER'} <= 10%); peak RSS {r['peak_rss_mb']:.0f} MB "
            f"({'ok' if r['rss_ok'] else 'OVER'} <= {r['rss_budget_mb']:.0f}); sustainable "
            f"{r['sustainable_fps']:.1f} fps at 1 inference / {r['every']} frames -> "
            f"{'keeps up' if r['keeps_up'] else 'does NOT keep up'} with {r['target_fps']:g} fps"
        )
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "load_average_at_end": os.getloadavg(),  # the CPU may be shared during the run
        },
        "variant": a.variant,
        "video": a.video,
        "every": a.every,
        "target_fps": a.target_fps,
        "results": rows,
        "preprocess": pre,
    }
    write_json(a.out, report)
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
