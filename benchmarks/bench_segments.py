"""Action segments of a trained tiny model on untrimmed synthetic videos with known boundaries.

Trains a tiny model (--variant, default tiny-scratch; random init, --epochs) on
--clips-per-class synthetic motion clips of --motions (default MoveLeft, MoveUp, Grow: one
per axis of motion, which a tiny model learns first), --cut-share of them cut out of a long
action so that they hold a cut as most windows of an untrimmed video do (SynthConfig.cut_share),
or reuses a run (--run DIR), then for each seed makes an
untrimmed video (`edgevid data synth --untrimmed`: --segments actions of 3-5 s back to
back) and runs it through `edgevid.predict` (the runtime's loop, EMA smoothing and
segmenter with their defaults, ONNX Runtime on the checkpoint exported on the fly).
Reports, per video and pooled: segment precision / recall / F1 at temporal IoU 0.5, and
the mean absolute boundary error in seconds of the matched segments. Also the window
accuracy (share of windows whose label is the true action at the window's centre), split
into windows inside one action and windows across a boundary, and
the segmenter's ceiling ("oracle": the same windows given perfect probabilities, the
share of each window's span every true action covers), which separates what the
segmenter loses from what the classifier gets wrong.
Prints a table, writes benchmarks/results/bench_segments.json.

With --gap-s MIN MAX the videos hold a still scene of MIN-MAX seconds between actions, and
each is also run with motion gating (``gate="motion"``): the gated segments, their F1 and
how many windows the gate skipped are reported beside the ungated ones ("no missed
actions": gated F1 within 0.02 of ungated).

    python benchmarks/bench_segments.py [--run runs/axes] [--videos 5] [--cut-share 0]
    python benchmarks/bench_segments.py --gap-s 2 6 --out benchmarks/results/bench_gating.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import edgevid
from edgevid.runtime.segments import Segment, segment_scores
from edgevid.train.synth import SynthConfig, make_untrimmed_video

DEFAULT_MOTIONS = ("MoveLeft", "MoveUp", "Grow")
FPS = SynthConfig().fps  # of the untrimmed videos
RESULTS = Path(__file__).parent / "results" / "bench_segments.json"


def train_tiny(
    work: Path,
    motions: tuple[str, ...],
    epochs: int,
    variant: str,
    cut_share: float,
    clips_per_class: int,
) -> Path:
    from edgevid.core.manifest import split_dataset
    from edgevid.train.config import AugmentConfig, TrainConfig
    from edgevid.train.synth import make_synthetic_dataset
    from edgevid.train.trainer import train

    make_synthetic_dataset(
        work / "synth",
        motions=motions,
        clips_per_class=clips_per_class,
        seed=7,
        config=SynthConfig(cut_share=cut_share),
    )
    manifest = split_dataset(work / "synth", ratios=(0.7, 0.1, 0.2), seed=0)
    cfg = TrainConfig(
        variant=variant, weights="random", epochs=epochs, lr=1e-3, batch_size=16,
        unfreeze=-1, warmup_epochs=1, label_smoothing=0.0, augment=AugmentConfig(enabled=False),
    )  # fmt: skip
    train(cfg, manifest, work / "run", progress=False)
    return work / "run"


def edgevid_labels(run: Path) -> list[str]:
    from edgevid.core.meta import ModelMeta

    best = run / "best" if (run / "best").is_dir() else run
    return ModelMeta.load(best).labels


def window_accuracy(results: list, truth: list) -> float:
    """Share of windows whose label is the true action at the window's centre."""
    hits = []
    for r in results:
        t = r.window_centre
        true = next((s.label for s in truth if s.start <= t < s.end), None)
        hits.append(r.label == true)
    return float(np.mean(hits))


def window_accuracy_split(results: list, truth: list, fps: float) -> tuple[float, float]:
    """Window accuracy of the windows inside one true action, and of those across a boundary
    (scored against the action at their centre)."""
    inside, across = [], []
    for r in results:
        a, b = r.window_start, r.timestamp + 1 / fps  # the window's frames
        true = next((s.label for s in truth if s.start <= r.window_centre < s.end), None)
        spans = sum(1 for s in truth if s.start < b and s.end > a)
        (inside if spans == 1 else across).append(r.label == true)
    return float(np.mean(inside)), float(np.mean(across))


def pool_scores(rows: list[dict]) -> dict:
    """Segment scores over all videos: counts summed, boundary error over every matched pair."""
    n = {k: sum(r[k] for r in rows) for k in ("predicted", "truth", "matched")}
    prec = n["matched"] / n["predicted"] if n["predicted"] else 0.0
    rec = n["matched"] / n["truth"] if n["truth"] else 0.0
    errs = [(row["boundary_error_s"], row["matched"]) for row in rows if row["matched"]]
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {**n, "precision": prec, "recall": rec, "f1": f1,
            "boundary_error_s": (sum(e * m for e, m in errs) / sum(m for _, m in errs)
                                 if errs else None)}  # fmt: skip


def oracle_segments(results: list, truth: list, labels: list[str], window_s: float) -> list:
    """The segmenter's ceiling: the same windows, each given the "perfect" probabilities
    (the share of its span each true action covers), through the same Segmenter."""
    from edgevid.runtime.segments import SegmentConfig, Segmenter

    seg = Segmenter(SegmentConfig.for_clip(window_s))
    for r in results:
        a, b = r.window_start, max(r.timestamp, r.window_start + 1e-6)
        p = np.zeros(len(labels))
        for s in truth:
            p[labels.index(s.label)] += max(0.0, min(b, s.end) - max(a, s.start)) / (b - a)
        seg.update(r.window_centre, p, labels)
    seg.finish()
    return seg.segments


def gated_scores(video: Path, run: Path, truth: list, windows_ungated: int) -> dict:
    """The same video through the loop with motion gating: segment scores and windows run."""
    result = edgevid.predict(video, run, gate="motion")
    return {**segment_scores(result.segments, truth), "windows": len(result.results),
            "windows_ungated": windows_ungated}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="Trained run folder to reuse.")
    ap.add_argument(
        "--motions",
        nargs="+",
        default=None,
        help="Motions of the untrimmed videos [default: the model's labels].",
    )
    ap.add_argument("--variant", default="tiny-scratch",
                    help="Tiny variant to train (tiny-scratch, tiny-prune8, ...).")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--clips-per-class", type=int, default=300, help="Training data size.")
    ap.add_argument("--cut-share", type=float, default=0.5,
                    help="Share of training clips holding a cut.")  # fmt: skip
    ap.add_argument("--videos", type=int, default=5, help="Untrimmed videos (seeds).")
    ap.add_argument("--segments", type=int, default=10, help="Actions per video.")
    ap.add_argument("--gap-s", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                    help="Still scene between actions; also run with motion gating.")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    load_start = list(os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="bench_segments."))
    run = args.run or train_tiny(
        work,
        tuple(args.motions or DEFAULT_MOTIONS),
        args.epochs,
        args.variant,
        args.cut_share,
        args.clips_per_class,
    )
    motions = tuple(args.motions or edgevid_labels(run))
    rows = []
    for seed in range(args.videos):
        video = work / f"untrimmed-{seed}.mp4"
        truth_raw = make_untrimmed_video(
            video, segments=args.segments, seed=100 + seed, motions=motions,
            gap_s=tuple(args.gap_s or (0.0, 0.0)),
        )  # fmt: skip
        truth = [Segment(s.label, s.start, s.end, 1.0, "closed") for s in truth_raw]
        t0 = time.perf_counter()
        result = edgevid.predict(video, run)
        elapsed = time.perf_counter() - t0
        scores = segment_scores(result.segments, truth)
        acc = window_accuracy(result.results, truth)
        acc_in, acc_across = window_accuracy_split(result.results, truth, FPS)
        window_s = max(r.timestamp - r.window_start for r in result.results) + 1 / FPS
        oracle = segment_scores(
            oracle_segments(result.results, truth, list(motions), window_s), truth
        )
        rows.append({"seed": 100 + seed, "duration_s": truth[-1].end, "window_acc": acc,
                     "window_acc_inside": acc_in, "window_acc_across": acc_across,
                     "elapsed_s": round(elapsed, 2), **scores,
                     "oracle_f1": oracle["f1"],
                     "oracle_boundary_error_s": oracle["boundary_error_s"]})  # fmt: skip
        if args.gap_s:
            rows[-1]["gated"] = gated_scores(video, run, truth, len(result.results))
    pooled = pool_scores(rows)
    if args.gap_s:
        pooled["gated"] = pool_scores([r["gated"] for r in rows])
        pooled["gated"]["windows"] = sum(r["gated"]["windows"] for r in rows)
        pooled["gated"]["windows_ungated"] = sum(r["gated"]["windows_ungated"] for r in rows)
    pooled["oracle_f1"] = float(np.mean([r["oracle_f1"] for r in rows]))
    errs = [r["oracle_boundary_error_s"] for r in rows if r["oracle_boundary_error_s"] is not None]
    pooled["oracle_boundary_error_s"] = float(np.mean(errs)) if errs else None
    for key in ("window_acc", "window_acc_inside", "window_acc_across"):
        pooled[key] = float(np.mean([r[key] for r in rows]))
    print(f"{'video':<8}{'s':>6}{'win acc':>9}{'inside':>8}{'across':>8}{'pred':>6}{'true':>6}"
          f"{'P':>7}{'R':>7}{'F1@0.5':>8}{'bound err s':>13}{'oracle F1':>11}"
          f"{'oracle err s':>14}")  # fmt: skip
    for r in [*rows, {"seed": "all", "duration_s": sum(r["duration_s"] for r in rows),
                      **pooled}]:  # fmt: skip
        err = "-" if r["boundary_error_s"] is None else f"{r['boundary_error_s']:.2f}"
        oerr = (
            "-" if r["oracle_boundary_error_s"] is None else f"{r['oracle_boundary_error_s']:.2f}"
        )
        print(f"{r['seed']!s:<8}{r['duration_s']:>6.0f}{r['window_acc']:>9.2f}"
              f"{r['window_acc_inside']:>8.2f}{r['window_acc_across']:>8.2f}"
              f"{r['predicted']:>6}{r['truth']:>6}{r['precision']:>7.2f}{r['recall']:>7.2f}"
              f"{r['f1']:>8.2f}{err:>13}{r['oracle_f1']:>11.2f}{oerr:>14}")  # fmt: skip
    out = {
        "run": str(args.run) if args.run else "trained by the benchmark",
        "training": None
        if args.run
        else {
            "variant": args.variant,
            "epochs": args.epochs,
            "clips_per_class": args.clips_per_class,
            "cut_share": args.cut_share,
        },
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "motions": list(motions),
        "segments_per_video": args.segments,
        "videos": rows,
        "pooled": pooled,
    }
    if args.gap_s:
        g = pooled["gated"]
        print(f"motion gating: F1 {g['f1']:.3f} vs {pooled['f1']:.3f} ungated "
              f"(difference {g['f1'] - pooled['f1']:+.3f}); {g['windows']} of "
              f"{g['windows_ungated']} windows classified")  # fmt: skip
        out["gap_s"] = args.gap_s
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
