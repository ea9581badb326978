"""The must-show: a tiny video model learns motion on CPU, and it needs the frame order.

On the synthetic dataset one frame cannot tell the classes apart (MoveLeft and MoveRight
are time reversals of each other). A tiny model trained for a short while through the real
training loop must beat chance (20%) on the test split by a margin no random guesser
reaches, and shuffling the frames of the test clips (the same clips, the same model) must
cost it accuracy: what it learned is in the order of the frames.

The model is the tiny scratch baseline. A tiny TimeSformer trained from random weights
does not get there in CPU minutes (measured: 24% test after 8 epochs on 360 clips):
its time embeddings start at zero and a ViT needs far more clips; in practice it starts
from Kinetics-400 weights. ``benchmarks/bench_train_control.py`` reports both.
"""

from __future__ import annotations

import json
from math import comb

import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
from edgevid.train.checkpoint import load_checkpoint  # noqa: E402
from edgevid.train.config import AugmentConfig, TrainConfig  # noqa: E402
from edgevid.train.folders import split_dataset  # noqa: E402
from edgevid.train.synth import make_synthetic_dataset  # noqa: E402
from edgevid.train.trainer import evaluate_model, train  # noqa: E402

CLASSES, CLIPS = 5, 200  # 1000 clips: 600 train, 100 val, 300 test
CHANCE = 1 / CLASSES


def p_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely a guesser scores k of n or more."""
    return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_tiny_model_learns_motion_and_needs_frame_order(tmp_path):
    root = tmp_path / "motion"
    make_synthetic_dataset(root, classes=CLASSES, clips_per_class=CLIPS, seed=7)
    manifest = split_dataset(root, ratios=(0.6, 0.1, 0.3), seed=0)
    cfg = TrainConfig(
        variant="tiny-scratch",
        epochs=5,
        lr=2e-3,
        batch_size=16,
        unfreeze=-1,
        warmup_epochs=1,
        augment=AugmentConfig(enabled=False),
    )
    result = train(cfg, manifest, tmp_path / "run", progress=False)
    model, meta = load_checkpoint(tmp_path / "run" / "best")
    ordered = result.test
    shuffled = evaluate_model(model, meta, manifest, "test", shuffle_frames=True)
    n = ordered.num_clips
    summary = {
        "n_test": n,
        "ordered": ordered.top1,
        "shuffled": shuffled.top1,
        "chance": CHANCE,
        "history": result.history,
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    correct = round(ordered.top1 * n)
    assert p_at_least(correct, n, CHANCE) < 1e-6, summary  # no guesser gets here by luck
    assert ordered.top1 >= shuffled.top1 + 0.1, summary
