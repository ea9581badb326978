"""Seeded training gives the same numbers on the same software, however busy the machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
from edgevid.core.manifest import split_dataset  # noqa: E402
from edgevid.train.checkpoint import load_checkpoint  # noqa: E402
from edgevid.train.config import TrainConfig  # noqa: E402
from edgevid.train.trainer import Trainer  # noqa: E402

BURN = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"


def _train(manifest, run):
    cfg = TrainConfig(variant="tiny-prune8", epochs=2, batch_size=4, lr=1e-3, unfreeze=-1,
                      seed=7, threads=2)  # fmt: skip
    result = Trainer(cfg, manifest, run, progress=False).fit()
    model, _ = load_checkpoint(run / "last")
    return result.history, model.state_dict()


def test_two_seeded_runs_are_equal_on_an_idle_and_a_busy_machine(synth_root, tmp_path):
    manifest = split_dataset(synth_root)
    quiet = _train(manifest, tmp_path / "a")
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(4)]
    try:  # four busy processes on the same cores: the threads are preempted all the time
        busy = _train(manifest, tmp_path / "b")
    finally:
        for p in burners:
            p.kill()
            p.wait()
    for a, b in zip(quiet[0], busy[0], strict=True):
        assert a["train_loss"] == b["train_loss"] and a.get("val_acc") == b.get("val_acc")
    for name, w in quiet[1].items():
        assert torch.equal(w, busy[1][name]), name  # bit for bit
