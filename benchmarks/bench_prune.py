"""Pruning strategies at equal depth: `last` vs `importance`, each with KD recovery.

Trains a tiny 12-layer TimeSformer teacher on the synthetic motion dataset (or takes
--teacher RUN/best), prunes it to each --keep with both strategies, recovers each student
with the same short distillation, and reports validation / test accuracy before and after
recovery, and, per depth, a paired test on the test clips (exact McNemar: of the clips
exactly one strategy gets right, how lopsided is the split). Prints a table, writes
benchmarks/results/bench_prune.json.

    python benchmarks/bench_prune.py                      # ~10-20 min on a 2-core CPU
    python benchmarks/bench_prune.py --teacher runs/t/best --keep 6 4   # its run's split
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from math import comb
from pathlib import Path

import numpy as np

from edgevid.train.checkpoint import load_checkpoint, meta_for
from edgevid.train.clips import clip_batches
from edgevid.train.config import AugmentConfig, TrainConfig
from edgevid.train.evaluate import torch_predictor
from edgevid.train.folders import load_or_split, split_dataset
from edgevid.train.prune import STRATEGIES, prune, pruned_copy, val_tensors
from edgevid.train.synth import make_synthetic_dataset
from edgevid.train.trainer import evaluate_model, train

RESULTS = Path(__file__).parent / "results" / "bench_prune.json"


def correct_per_clip(model, meta, manifest) -> np.ndarray:
    """(N,) bool: which test clips ``model`` classifies right (fed like the runtime)."""
    paths, targets = manifest.paths("test"), manifest.labels("test")
    predict = torch_predictor(model.eval())
    batches = clip_batches(paths, targets, meta, 32)
    return np.concatenate([predict(x).argmax(1) == y for x, y in batches])


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes ``a`` vs ``b``."""
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, k = only_a + only_b, max(only_a, only_b)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k, n + 1)) / 2**n) if n else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, help="trained checkpoint (default: train one)")
    ap.add_argument("--data", type=Path, help="dataset folder (default: synthetic, 5 x 200)")
    ap.add_argument("--keep", type=int, nargs="+", default=[6, 4])
    ap.add_argument("--teacher-epochs", type=int, default=50)
    ap.add_argument("--recover-epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_prune."))
    if args.data is None and args.teacher is not None:  # the split the teacher trained on
        trained_on = args.teacher.parent / "manifest.json"
        args.data = trained_on if trained_on.is_file() else None
    if args.data is None:
        args.data = work / "synth"
        make_synthetic_dataset(args.data, classes=5, clips_per_class=200, seed=7)
        manifest = split_dataset(args.data, ratios=(0.6, 0.1, 0.3))
    else:
        manifest = load_or_split(args.data)
    if args.teacher is None:
        cfg = TrainConfig(
            variant="tiny-timesformer",
            weights="random",
            epochs=args.teacher_epochs,
            lr=1e-3,  # the must-show recipe (tests/test_train_learns.py): learns frame order
            batch_size=16,
            unfreeze=-1,
            label_smoothing=0.0,
            augment=AugmentConfig(enabled=False),
        )
        train(cfg, manifest, work / "teacher")
        args.teacher = work / "teacher" / "best"
    teacher, meta = load_checkpoint(args.teacher)
    rows = [
        {
            "strategy": "unpruned",
            "layers": meta.num_layers,
            "test_acc": evaluate_model(teacher, meta, manifest, "test").top1,
        }
    ]
    val = val_tensors(manifest, meta)
    recover = TrainConfig(
        variant=meta.variant,
        epochs=args.recover_epochs,
        lr=1e-3,
        batch_size=32,
        unfreeze=-1,
        warmup_epochs=0.0,
        augment=AugmentConfig(enabled=False),
    )
    for keep in args.keep:
        outcomes = {}
        for strategy in sorted(STRATEGIES):
            start = time.perf_counter()
            kept = STRATEGIES[strategy](teacher, keep, val=val, progress=False)
            student = pruned_copy(teacher, kept)
            smeta = meta_for(student, meta.sampling)
            before = evaluate_model(student, smeta, manifest, "test").top1
            r = prune(
                teacher,
                meta,
                manifest,
                work / f"{strategy}{keep}",
                keep=keep,
                strategy=strategy,
                recover=recover,
            )
            rows.append(
                {
                    "strategy": strategy,
                    "layers": keep,
                    "kept_layers": r.kept_layers,
                    "test_acc_pruned": before,
                    "val_acc": r.val_acc,
                    "test_acc": r.test_acc,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            outcomes[strategy] = correct_per_clip(r.model, smeta, manifest)
        imp, last = outcomes["importance"], outcomes["last"]
        rows[-2]["mcnemar_p_vs_other"] = rows[-1]["mcnemar_p_vs_other"] = mcnemar_p(imp, last)
    print(f"\n{'strategy':<12}{'layers':>7}{'test (pruned)':>15}{'test (+KD)':>12}{'p':>8}  kept")
    for r in rows:
        before = f"{r['test_acc_pruned']:.3f}" if "test_acc_pruned" in r else "-"
        p = f"{r['mcnemar_p_vs_other']:.3f}" if "mcnemar_p_vs_other" in r else "-"
        print(
            f"{r['strategy']:<12}{r['layers']:>7}{before:>15}{r['test_acc']:>12.3f}{p:>8}  "
            f"{r.get('kept_layers', '')}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "rows": rows,
                "test_clips": len(manifest.splits["test"]),
                "recover_epochs": args.recover_epochs,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
