"""The resume state: JSON + safetensors, exact round trip, and nothing in it can run code."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import needs_torch

pytestmark = needs_torch

torch = pytest.importorskip("torch")
from edgevid.cli import main  # noqa: E402
from edgevid.core.manifest import split_dataset  # noqa: E402
from edgevid.errors import ModelError  # noqa: E402
from edgevid.train.checkpoint import (  # noqa: E402
    OLD_STATE_FILENAME,
    STATE_FILENAME,
    STATE_TENSORS,
    load_training_state,
    save_training_state,
)
from edgevid.train.config import TrainConfig  # noqa: E402
from edgevid.train.trainer import Trainer  # noqa: E402


class _Planted:
    """A pickle that, once loaded, creates the file it names: what an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def run_dir(synth_root, tmp_path_factory) -> Path:
    """A real one-epoch tiny-scratch run folder (config, manifest, best/, last/ + state)."""
    manifest = split_dataset(synth_root)
    run = tmp_path_factory.mktemp("state") / "run"
    cfg = TrainConfig(variant="tiny-scratch", epochs=1, batch_size=8, seed=3)
    Trainer(cfg, manifest, run, progress=False).fit()
    return run


def _same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert type(b) is dict and list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), (a, b)  # nan == nan


def test_state_round_trips_exactly(run_dir, tmp_path):
    """Every tensor bit for bit, every int key, tuple and float (nan, inf) as it was."""
    state = load_training_state(run_dir / "last")
    assert isinstance(next(iter(state["optimizer"]["state"])), int)  # int keys kept
    assert state["optimizer"]["state"], "the optimizer moments are saved"
    state["best"]["val_loss"] = float("inf")
    state["extra"] = {"nan": float("nan"), "t": (1, 2.5, None)}
    save_training_state(state, tmp_path)
    _same(state, load_training_state(tmp_path))


def _resume(run: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    return result.exit_code, result.output


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    return run


@pytest.mark.parametrize(
    "plant",
    [
        "old-format",  # the pre-JSON training_state.pt, as a real run folder would carry it
        "as-tensors",  # the pickle renamed to the safetensors file
        "as-json",  # the pickle as the JSON file
        "torch-zip-as-tensors",  # torch.save's zip container in place of the safetensors
    ],
)
def test_planted_pickle_never_runs(run_dir, tmp_path, plant):
    run = _copy(run_dir, tmp_path)
    marker = tmp_path / "pwned"
    last = run / "last"
    payload = pickle.dumps({"optimizer": _Planted(marker)})
    if plant == "old-format":
        (last / STATE_FILENAME).unlink()
        (last / STATE_TENSORS).unlink()
        torch.save({"epoch": 0, "optimizer": _Planted(marker)}, last / OLD_STATE_FILENAME)
    elif plant == "as-tensors":
        (last / STATE_TENSORS).write_bytes(payload)
    elif plant == "as-json":
        (last / STATE_FILENAME).write_bytes(payload)
    else:
        torch.save({"t0": _Planted(marker)}, last / STATE_TENSORS)
    code, out = _resume(run)
    assert not marker.exists(), "the planted pickle ran"
    assert code == 2, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert "resume state" in out and str(last) in out


@pytest.mark.parametrize(
    "edit",
    [
        lambda body: body.update(format=1),  # an unknown layout
        lambda body: body["state"].pop("optimizer"),  # a missing part
        lambda body: body["state"].update(epoch="three"),  # a wrong type
        lambda body: body["state"]["rng"].update(torch={"__tensor__": "nope"}),  # dangling ref
    ],
    ids=["format", "missing", "type", "dangling"],
)
def test_tampered_state_is_one_line(run_dir, tmp_path, edit):
    run = _copy(run_dir, tmp_path)
    file = run / "last" / STATE_FILENAME
    body = json.loads(file.read_text())
    edit(body)
    file.write_text(json.dumps(body))
    code, out = _resume(run)
    assert code == 2 and "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert "resume state" in out


def test_no_state_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no training_state.json"):
        load_training_state(tmp_path)
