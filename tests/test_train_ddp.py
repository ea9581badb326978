"""Scale-out: the same `edgevid train` command under torchrun, two data-parallel processes.

No GPU here, so the processes are CPU ranks talking over gloo on 127.0.0.1: the path
accelerate takes on several GPUs, minus NCCL (accelerate's DDP wrapper averages the
gradients). Each rank must take half of every epoch (the step count says so), the run must
see both processes, and only rank 0 reports and writes a loadable checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.slow]

torch = pytest.importorskip("torch")
from edgevid.core.manifest import split_dataset  # noqa: E402
from edgevid.train.checkpoint import load_checkpoint  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_runs_data_parallel_under_torchrun(synth_root, tmp_path):
    manifest = split_dataset(synth_root, ratios=(0.8, 0.1, 0.1), seed=0)
    train_clips = len(manifest.splits["train"])
    out, batch = tmp_path / "run", 4
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "edgevid", "train", "--variant", "tiny-prune8", "--data", str(synth_root),
        "--epochs", "2", "--batch-size", str(batch), "--no-augment", "--quiet",
        "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("test top-1") == 1, proc.stdout  # rank 0 reports, rank 1 not
    history = json.loads((out / "history.json").read_text())
    steps_per_epoch = math.ceil(math.ceil(train_clips / 2) / batch)  # each rank: half
    assert [h["processes"] for h in history] == [2, 2]
    assert history[-1]["step"] == 2 * steps_per_epoch
    model, meta = load_checkpoint(out / "best")
    assert meta.labels == manifest.classes
    x = torch.randn(1, 8, 3, 32, 32)  # (B, T, C, H, W)
    assert torch.isfinite(model(pixel_values=x).logits).all()
