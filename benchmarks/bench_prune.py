"""Pruning strategies at equal depth: `importance` + KD vs `last` + KD vs `last` + CE.

For each seed, trains a tiny 12-layer TimeSformer teacher on the synthetic motion dataset
(or takes --teacher RUN/best), prunes it to each --keep with both strategies, and recovers
every student with the same short fine-tuning as `edgevid prune` (3 epochs, lr 1e-4):
with distillation (KD), and, for `last`, also with plain cross-entropy (the seed study's
recipe). Reports test accuracy straight after pruning and after recovery, and per depth,
pooled over seeds, a paired test on the test clips (exact sign test on the clips exactly
one of two arms gets right). Prints tables, writes benchmarks/results/bench_prune.json.

    python benchmarks/bench_prune.py                      # 6 teachers, ~50 min on 2 cores
    python benchmarks/bench_prune.py --reuse --seeds 0 1 2 3 4 5 6 7   # adds seeds 6, 7
    python benchmarks/bench_prune.py --teacher runs/t/best --keep 6 4   # its run's split
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from math import comb
from pathlib import Path

import numpy as np

from edgevid.core.clips import clip_batches
from edgevid.core.manifest import load_or_split, split_dataset
from edgevid.train.checkpoint import load_checkpoint, meta_for
from edgevid.train.config import AugmentConfig, TrainConfig
from edgevid.train.evaluate import torch_predictor
from edgevid.train.prune import prune
from edgevid.train.synth import make_synthetic_dataset
from edgevid.train.trainer import evaluate_model, train

RESULTS = Path(__file__).parent / "results" / "bench_prune.json"
ARMS = {  # name: (strategy, kd_alpha)
    "importance+KD": ("importance", 0.5),
    "last+KD": ("last", 0.5),
    "last+CE": ("last", 0.0),
}
VERSUS = ("last+KD", "last+CE")  # importance+KD is compared with each


def correct_per_clip(model, meta, manifest) -> np.ndarray:
    """(N,) bool: which test clips ``model`` classifies right (fed like the runtime)."""
    paths, targets = manifest.paths("test"), manifest.labels("test")
    predict = torch_predictor(model.eval())
    batches = clip_batches(paths, targets, meta, 32)
    return np.concatenate([predict(x).argmax(1) == y for x, y in batches])


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar on discordant pairs): P(split this lopsided | 50/50)."""
    n, k = wins + losses, max(wins, losses)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k, n + 1)) / 2**n) if n else 1.0


def train_teacher(manifest, out: Path, epochs: int, seed: int) -> Path:
    cfg = TrainConfig(
        variant="tiny-timesformer",
        weights="random",
        epochs=epochs,
        lr=1e-3,  # the must-show recipe (tests/test_train_learns.py): learns frame order
        batch_size=16,
        unfreeze=-1,
        label_smoothing=0.0,
        augment=AugmentConfig(enabled=False),
        seed=seed,
    )
    train(cfg, manifest, out, progress=False)
    return out / "best"


def run_seed(teacher_dir: Path, manifest, keeps, recover: TrainConfig, work: Path, seed: int):
    """Rows for one teacher: every depth x arm, each with its per-clip outcomes."""
    teacher, meta = load_checkpoint(teacher_dir)
    teacher_acc = evaluate_model(teacher, meta, manifest, "test").top1
    rows = []
    for keep in keeps:
        for arm, (strategy, kd_alpha) in ARMS.items():
            start = time.perf_counter()
            r = prune(
                teacher,
                meta,
                manifest,
                work / f"seed{seed}" / f"{arm}{keep}",
                keep=keep,
                strategy=strategy,
                recover=dataclasses.replace(recover, kd_alpha=kd_alpha, seed=seed),
                progress=False,
            )
            right = correct_per_clip(r.model, meta_for(r.model, meta.sampling), manifest)
            rows.append(
                {
                    "seed": seed,
                    "teacher_test_acc": teacher_acc,
                    "arm": arm,
                    "layers": keep,
                    "kept_layers": r.kept_layers,
                    "test_acc_pruned": r.pruned_test_acc,
                    "test_acc": r.test_acc,
                    "seconds": round(time.perf_counter() - start, 1),
                    "test_correct": "".join("1" if c else "0" for c in right),  # per clip
                }
            )
            print(
                f"seed {seed} teacher {teacher_acc:.3f}  {arm:<14}{keep:>3} layers  "
                f"pruned {r.pruned_test_acc:.3f} -> recovered {r.test_acc:.3f}  {r.kept_layers}",
                flush=True,
            )
    return rows


def correct(rows, seed: int, keep: int, arm: str) -> np.ndarray:
    (r,) = [r for r in rows if (r["seed"], r["layers"], r["arm"]) == (seed, keep, arm)]
    return np.frombuffer(r["test_correct"].encode(), np.uint8) == ord("1")


def paired(rows, keep: int, arm: str, other: str) -> dict:
    """``arm`` vs ``other`` at depth ``keep``, test clips pooled over seeds."""
    seeds = sorted({r["seed"] for r in rows})
    a = [correct(rows, s, keep, arm) for s in seeds]
    b = [correct(rows, s, keep, other) for s in seeds]
    wins = sum(int((x & ~y).sum()) for x, y in zip(a, b, strict=True))
    losses = sum(int((~x & y).sum()) for x, y in zip(a, b, strict=True))
    seeds_won = sum(x.mean() > y.mean() for x, y in zip(a, b, strict=True))
    return {"clips_won": wins, "clips_lost": losses, "p": sign_test_p(wins, losses),
            "seeds_won": int(seeds_won)}  # fmt: skip


def summarize(rows, keeps) -> list[dict]:
    """Per depth: mean accuracy per arm over seeds; importance+KD vs each other arm."""
    summary = []
    for keep in keeps:
        row = {"layers": keep, "seeds": len({r["seed"] for r in rows})}
        for arm in ARMS:
            at = [r for r in rows if r["layers"] == keep and r["arm"] == arm]
            row[arm] = float(np.mean([r["test_acc"] for r in at]))
            row[f"{arm} pruned"] = float(np.mean([r["test_acc_pruned"] for r in at]))
        for other in VERSUS:
            row[f"vs {other}"] = paired(rows, keep, "importance+KD", other)
        summary.append(row)
    return summary


def print_tables(summary) -> None:
    print(f"\nmean test accuracy over {summary[0]['seeds']} teacher(s); pruned -> recovered")
    head = "".join(f"{a:>22}" for a in ARMS)
    print(f"{'layers':>6}{head}   imp+KD vs last+KD (clips won/lost, p, seeds)   vs last+CE")
    for s in summary:
        cells = "".join(f"{s[a + ' pruned']:>11.3f} -> {s[a]:.3f}" for a in ARMS)
        vs = [s[f"vs {o}"] for o in VERSUS]
        tests = "".join(
            f"   {v['clips_won']:>4}/{v['clips_lost']:<4} p={v['p']:<7.2g} {v['seeds_won']}/"
            f"{s['seeds']}"
            for v in vs
        )
        print(f"{s['layers']:>6}{cells}{tests}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, help="trained checkpoint (default: train one per seed)")
    ap.add_argument("--data", type=Path, help="dataset folder (default: synthetic, 5 x 200)")
    ap.add_argument("--keep", type=int, nargs="+", default=[10, 8, 6, 4])
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5], help="teacher + recovery"
    )
    ap.add_argument("--teacher-epochs", type=int, default=50)
    ap.add_argument("--recover-epochs", type=int, default=3, help="as `edgevid prune`")
    ap.add_argument("--recover-lr", type=float, default=1e-4, help="as `edgevid prune`")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--reuse", action="store_true", help="keep the seeds already in --out")
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
    recover = TrainConfig(  # `edgevid prune` defaults, augmentation off (synthetic clips)
        variant="tiny-timesformer",
        epochs=args.recover_epochs,
        lr=args.recover_lr,
        batch_size=8,
        unfreeze=-1,
        warmup_epochs=0.0,
        augment=AugmentConfig(enabled=False),
    )
    seeds = args.seeds[:1] if args.teacher else args.seeds
    rows = []
    if args.reuse and args.out.is_file():  # an earlier run with the same settings
        earlier = json.loads(args.out.read_text())
        settings = json.loads(json.dumps(recover.to_dict())), args.teacher_epochs
        if (earlier["recovery"], earlier["teacher_epochs"]) != settings:
            raise SystemExit(f"{args.out}: made with other recovery or teacher settings")
        rows = [r for r in earlier["runs"] if r["seed"] in seeds]
    for seed in sorted(set(seeds) - {r["seed"] for r in rows}):
        teacher = args.teacher or train_teacher(
            manifest, work / f"teacher{seed}", args.teacher_epochs, seed
        )
        rows += run_seed(teacher, manifest, args.keep, recover, work, seed)
    summary = summarize(rows, args.keep)
    print_tables(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "summary": summary,
                "runs": rows,
                "test_clips": len(manifest.splits["test"]),
                "recovery": recover.to_dict(),
                "teacher_epochs": args.teacher_epochs,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
