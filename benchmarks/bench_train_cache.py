"""Frozen-backbone feature caching: epoch time with and without it (same numbers out).

Fine-tuning the last block of a tiny 12-layer TimeSformer with augmentation off: with the
cache the frozen embedding + 11 layers run once per clip, then every epoch trains the last
block on cached features; without it every epoch decodes and runs the whole model.
Prints a table, writes benchmarks/results/bench_train_cache.json.

    python benchmarks/bench_train_cache.py [--epochs 5] [--clips-per-class 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edgevid.core.manifest import split_dataset
from edgevid.train.config import AugmentConfig, TrainConfig
from edgevid.train.synth import make_synthetic_dataset
from edgevid.train.trainer import train

RESULTS = Path(__file__).parent / "results" / "bench_train_cache.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="tiny-timesformer")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--clips-per-class", type=int, default=40)
    ap.add_argument("--unfreeze", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_cache."))
    make_synthetic_dataset(work / "synth", classes=5, clips_per_class=args.clips_per_class)
    manifest = split_dataset(work / "synth")
    rows = []
    for cache in (False, True):
        cfg = TrainConfig(
            variant=args.variant,
            epochs=args.epochs,
            lr=1e-3,
            batch_size=16,
            unfreeze=args.unfreeze,
            augment=AugmentConfig(enabled=False),
            cache_features=cache,
        )
        start = time.perf_counter()
        r = train(cfg, manifest, work / f"cache{cache}", progress=False)
        rows.append(
            {
                "cache": cache,
                "total_s": round(time.perf_counter() - start, 2),
                "cache_build_s": round(r.cache_seconds, 2),
                "epoch_s": round(sum(h["time_s"] for h in r.history) / len(r.history), 3),
                "final_train_loss": r.history[-1]["train_loss"],
                "val_acc": r.history[-1].get("val_acc"),
            }
        )
    speedup = rows[0]["epoch_s"] / rows[1]["epoch_s"]
    total_speedup = rows[0]["total_s"] / rows[1]["total_s"]
    print(
        f"\n{args.variant}, unfreeze {args.unfreeze}, {len(manifest.splits['train'])} train "
        f"clips, {args.epochs} epochs"
    )
    print(f"{'cache':<7}{'total s':>9}{'build s':>9}{'epoch s':>9}{'train loss':>12}")
    for r in rows:
        print(
            f"{str(r['cache']):<7}{r['total_s']:>9.2f}{r['cache_build_s']:>9.2f}"
            f"{r['epoch_s']:>9.3f}{r['final_train_loss']:>12.5f}"
        )
    print(f"epoch speed-up {speedup:.1f}x, whole run {total_speedup:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "variant": args.variant,
                "unfreeze": args.unfreeze,
                "epochs": args.epochs,
                "rows": rows,
                "epoch_speedup": speedup,
                "run_speedup": total_speedup,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
