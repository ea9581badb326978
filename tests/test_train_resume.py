"""Resume after a real kill: SIGKILL a training process mid-run, resume, compare.

The killed-and-resumed run must end with exactly the weights of an uninterrupted run with
the same configuration: same data order, augmentation draws, optimizer moments and
learning-rate schedule from the step it was killed after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, needs_torch

pytestmark = [needs_torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
from edgevid.core.manifest import split_dataset  # noqa: E402
from edgevid.train.checkpoint import STATE_FILENAME, load_checkpoint  # noqa: E402
from edgevid.train.config import TrainConfig  # noqa: E402
from edgevid.train.trainer import Trainer  # noqa: E402

EPOCHS = 3


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "edgevid", "train", *args, "--quiet"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _saved_step(run: Path) -> int:
    try:
        return json.loads((run / "last" / STATE_FILENAME).read_text())["state"]["global_step"]
    except (FileNotFoundError, ValueError, KeyError):  # not written yet
        return -1


def test_kill_mid_run_then_resume_matches_uninterrupted(synth_root, tmp_path):
    manifest = split_dataset(synth_root)
    manifest_path = manifest.save(tmp_path / "manifest.json")
    run = tmp_path / "run"
    args = [
        "--variant",
        "tiny-prune8",
        "--data",
        str(manifest_path),
        "--epochs",
        str(EPOCHS),
        "--lr",
        "1e-3",
        "--batch-size",
        "8",
        "--save-every",
        "1",
        "--out",
        str(run),
    ]
    proc = _start(args)
    deadline = time.monotonic() + 240
    while _saved_step(run) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.communicate()}"
    proc.kill()  # SIGKILL: no cleanup, no final save
    proc.wait()
    killed_at = _saved_step(run)
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    steps_per_epoch = -(-len(manifest.splits["train"]) // cfg.batch_size)
    assert 3 <= killed_at < EPOCHS * steps_per_epoch  # really mid-run

    resumed = _start(["--resume", str(run)])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert history[-1]["step"] == EPOCHS * steps_per_epoch

    reference = Trainer(cfg, manifest, tmp_path / "reference", progress=False)
    reference.fit()
    ours, _ = load_checkpoint(run / "last")
    ref, _ = load_checkpoint(tmp_path / "reference" / "last")
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    ref_history = json.loads((tmp_path / "reference" / "history.json").read_text())
    for a, b in zip(history, ref_history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_acc"] == b["val_acc"]
