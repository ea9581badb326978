"""The must-show: a tiny video model learns motion on CPU, and it needs the frame order.

On the synthetic dataset one frame cannot tell the classes apart (MoveLeft and MoveRight
are time reversals of each other). A tiny model trained for a short while through the real
training loop must beat chance (20%) on the test split by a margin no random guesser
reaches. Then the same model sees the same test clips with their frames shuffled: if order
did not matter, the clips it gets right only in order and those it gets right only shuffled
would be equally frequent (a sign test); they must not be.

The model is a 4-layer tiny TimeSformer (tiny-prune8) from random weights, 45 epochs on
600 clips (about two minutes on 2 cores). Order is learned late (validation sits at chance
for ~8 epochs, then learns the axis of motion, then its direction), and only because the
time embeddings start random (see ``init_time_embeddings``): from zeros, as Hugging Face
initialises them, a 30-epoch run reached 66% in order and 56% shuffled. With preprocessing
equal to the Hugging Face processor (Pillow's antialiased resize), 30 epochs no longer
reliably reach the direction (seeds 0 / 1: 59% / 64% in order, 57% / 58% shuffled); 45
epochs do (seed 1: 96% in order, 52% shuffled; seed 0 passes too).

How far the direction is learned in 45 epochs depends on the CPU's float arithmetic, seed 0
throughout: 88% in order / 54% shuffled with PyTorch held at AVX2 on an AMD EPYC with AVX-512
(``ATEN_CPU_CAPABILITY=avx2``), 66% / 57% on the CI machine (AVX2; 38 clips right only in
order, 11 only shuffled). So order is judged by the sign test, and the accuracy margin asked
on top of it is 5 points, which every run of this recipe measured so far clears (seed 1 at
AVX2: 64% / 51%). A peak lr of 2e-3 at AVX2 is not used: seed 0 learned less (56% / 55%),
seed 1 72% / 59%.
"""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
from edgevid.core.clips import clip_batches  # noqa: E402
from edgevid.core.manifest import split_dataset  # noqa: E402
from edgevid.train.checkpoint import load_checkpoint  # noqa: E402
from edgevid.train.config import AugmentConfig, TrainConfig  # noqa: E402
from edgevid.train.dataset import ClipDataset, numpy_batches  # noqa: E402
from edgevid.train.evaluate import torch_predictor  # noqa: E402
from edgevid.train.synth import make_synthetic_dataset  # noqa: E402
from edgevid.train.trainer import train  # noqa: E402

CLASSES, CLIPS = 5, 200  # 1000 clips: 600 train, 100 val, 300 test
CHANCE = 1 / CLASSES


def p_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely chance alone gives k of n or more."""
    return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_tiny_model_learns_motion_and_needs_frame_order(tmp_path):
    root = tmp_path / "motion"
    make_synthetic_dataset(root, classes=CLASSES, clips_per_class=CLIPS, seed=7)  # 1 scene/clip
    manifest = split_dataset(root, ratios=(0.6, 0.1, 0.3), seed=0)
    cfg = TrainConfig(
        variant="tiny-prune8",
        weights="random",
        epochs=45,
        lr=1e-3,
        batch_size=16,
        unfreeze=-1,
        warmup_epochs=1,
        label_smoothing=0.0,
        augment=AugmentConfig(enabled=False),
        threads=2,  # pinned as measured: float sums (and so this seeded run) depend on it
    )
    result = train(cfg, manifest, tmp_path / "run", progress=False)
    model, meta = load_checkpoint(tmp_path / "run" / "best")
    predict = torch_predictor(model)
    paths, targets = manifest.paths("test"), manifest.labels("test")
    shuffled_clips = ClipDataset(paths, targets, meta, shuffle_frames=True)
    ordered = np.concatenate(
        [predict(x).argmax(1) == y for x, y in clip_batches(paths, targets, meta, 32)]
    )
    shuffled = np.concatenate(
        [predict(x).argmax(1) == y for x, y in numpy_batches(shuffled_clips, 32)]
    )
    n = len(ordered)
    only_ordered, only_shuffled = int((ordered & ~shuffled).sum()), int((~ordered & shuffled).sum())
    summary = {
        "n_test": n,
        "ordered": float(ordered.mean()),
        "shuffled": float(shuffled.mean()),
        "chance": CHANCE,
        "only_ordered": only_ordered,
        "only_shuffled": only_shuffled,
        "history": result.history,
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    assert ordered.mean() == pytest.approx(result.test.top1)  # the run's own test report
    assert p_at_least(int(ordered.sum()), n, CHANCE) < 1e-6, summary  # no guesser gets here
    pairs = only_ordered + only_shuffled
    assert p_at_least(only_ordered, pairs, 0.5) < 1e-3, summary  # order matters (sign test)
    assert ordered.mean() > shuffled.mean() + 0.05, summary  # measured margins: docstring
