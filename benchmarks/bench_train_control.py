"""Does temporal order matter? Trained model vs frame-shuffled controls, per variant.

For each variant: train on ordered clips and evaluate on ordered and on frame-shuffled test
clips; train a control on frame-shuffled clips (train and test shuffled). Chance is
1 / classes. Prints a table, writes benchmarks/results/bench_train_control.json.

    python benchmarks/bench_train_control.py --variants tiny-scratch tiny-prune8 [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from edgevid.core.manifest import split_dataset
from edgevid.train.checkpoint import load_checkpoint
from edgevid.train.config import AugmentConfig, TrainConfig
from edgevid.train.synth import make_synthetic_dataset
from edgevid.train.trainer import evaluate_model, train

RESULTS = Path(__file__).parent / "results" / "bench_train_control.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["tiny-scratch", "tiny-prune8"])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--clips-per-class", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_control."))
    make_synthetic_dataset(work / "synth", classes=5, clips_per_class=args.clips_per_class, seed=7)
    manifest = split_dataset(work / "synth", ratios=(0.6, 0.1, 0.3))
    rows = []
    for variant in args.variants:
        row: dict = {"variant": variant}
        for shuffle in (False, True):
            cfg = TrainConfig(
                variant=variant,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=16,
                weights="random",
                unfreeze=-1,
                warmup_epochs=1,
                label_smoothing=0.0,
                shuffle_frames=shuffle,
                augment=AugmentConfig(enabled=False),
            )
            run = work / f"{variant}-{shuffle}"
            result = train(cfg, manifest, run, progress=False)
            if shuffle:
                row["control_trained_shuffled"] = result.test.top1
            else:
                model, meta = load_checkpoint(run / "best")
                row["ordered"] = result.test.top1
                row["ordered_model_shuffled_test"] = evaluate_model(
                    model, meta, manifest, "test", shuffle_frames=True
                ).top1
        rows.append(row)
    print(f"\n{len(manifest.splits['test'])} test clips, chance 0.200, {args.epochs} epochs")
    print(f"{'variant':<18}{'ordered':>9}{'same model, shuffled test':>27}{'control':>9}")
    for r in rows:
        print(
            f"{r['variant']:<18}{r['ordered']:>9.3f}{r['ordered_model_shuffled_test']:>27.3f}"
            f"{r['control_trained_shuffled']:>9.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "epochs": args.epochs,
                "chance": 0.2,
                "rows": rows,
                "test_clips": len(manifest.splits["test"]),
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
