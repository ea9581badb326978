"""Evaluation: the scores, pluggable predictors (torch and ONNX agree), the CLI and its errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgevid.cli import main
from tests.conftest import SYNTH_LABELS, needs_torch

pytestmark = needs_torch

pytest.importorskip("torch")

from edgevid.train.evaluate import (  # noqa: E402
    evaluate,
    labelled_clips,
    load_predictor,
    report_from_logits,
)


def test_scores_by_hand():
    labels = ["a", "b", "c"]
    targets = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])  # a: 1/2 right, b: 2/2, c: 1/2
    logits = np.eye(3)[pred] * 5.0
    r = report_from_logits(logits, targets, labels)
    assert r.top1 == pytest.approx(4 / 6) and r.top5 is None
    assert r.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    a, b, c = r.per_class
    assert (a.precision, a.recall) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (b.precision, b.recall, b.f1) == (pytest.approx(2 / 3), 1.0, pytest.approx(0.8))
    assert (c.precision, c.recall) == (1.0, 0.5) and c.support == 2
    assert r.loss == pytest.approx(
        -np.log(np.exp(5) / (np.exp(5) + 2)) * 4 / 6 - np.log(1 / (np.exp(5) + 2)) * 2 / 6
    )


def test_top5_only_with_more_than_five_classes():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 8))
    targets = rng.integers(0, 8, 50)
    r = report_from_logits(logits, targets, [str(i) for i in range(8)])
    top5 = np.argsort(-logits, 1)[:, :5]
    assert r.top5 == pytest.approx(
        np.mean([t in row for t, row in zip(targets, top5, strict=True)])
    )
    assert r.top5 >= r.top1


def test_torch_and_onnx_predictors_agree(tiny_checkpoint, tiny_onnx, synth_root):
    from edgevid.core.clips import clip_batches

    reports = []
    for path in (tiny_checkpoint, tiny_onnx):
        predict, meta = load_predictor(path)
        paths, targets = labelled_clips(synth_root, meta.labels)
        batches = list(clip_batches(paths[:12], targets[:12], meta, 4))
        logits = np.concatenate([predict(x) for x, _ in batches])
        reports.append((evaluate(predict, batches, meta.labels), logits))
    (r_torch, l_torch), (r_onnx, l_onnx) = reports
    np.testing.assert_allclose(l_torch, l_onnx, atol=1e-4)
    assert r_torch.confusion == r_onnx.confusion


def test_cli_eval_on_a_folder_of_videos(tiny_checkpoint, synth_root, tmp_path):
    folder = tmp_path / "real_world"
    for c in ("Grow", "MoveLeft"):
        (folder / c).mkdir(parents=True)
        for clip in sorted((synth_root / c).glob("*.mp4"))[:2]:
            shutil.copy(clip, folder / c / clip.name)
    (folder / "MoveLeft" / "broken.mp4").write_bytes(b"junk" * 50)
    out = tmp_path / "eval"
    r = CliRunner().invoke(
        main,
        [
            "eval",
            "--model",
            str(tiny_checkpoint),
            "--data",
            str(folder),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["num_clips"] == 4 and len(report["skipped"]) == 1
    assert report["labels"] == SYNTH_LABELS and np.sum(report["confusion"]) == 4
    assert (out / "confusion_matrix.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--model", "{missing}", "--data", "{data}"], "no such model"),
        (["eval", "--model", "{ckpt}", "--data", "{unknown}"], "not among the model's labels"),
        (
            ["eval", "--model", "{ckpt}", "--data", "{data}", "--split", "nope"],
            "'nope' is not one of",
        ),
        (["train", "--variant", "tiny-prune8"], "needs --data ROOT and --out"),
        (["train", "--variant", "nope", "--data", "{data}", "--out", "{new}"], "unknown variant"),
        (["train", "--resume", "{missing}"], "not a training run"),
        (["prune", "--checkpoint", "{ckpt}", "--out", "{new}"], "exactly one of"),
        (
            [
                "prune",
                "--checkpoint",
                "{ckpt}",
                "--variant",
                "drop4",
                "--data",
                "{data}",
                "--out",
                "{new}",
            ],
            "unknown variant 'drop4'",
        ),
        (["prune", "--checkpoint", "{missing}", "--keep", "2", "--out", "{new}"], "not found"),
    ],
)
def test_cli_errors_are_one_line(args, message, tiny_checkpoint, synth_root, tmp_path):
    from edgevid.core.manifest import load_or_split

    unknown = tmp_path / "unknown" / "Cooking"
    unknown.mkdir(parents=True)
    shutil.copy(next((synth_root / "Grow").glob("*.mp4")), unknown / "a.mp4")
    load_or_split(synth_root)
    where = {
        "missing": tmp_path / "missing",
        "data": synth_root,
        "ckpt": tiny_checkpoint,
        "unknown": unknown.parent,
        "new": tmp_path / "new",
    }
    r = CliRunner().invoke(main, [a.format(**where) for a in args])
    assert r.exit_code != 0
    lines = [line for line in r.output.splitlines() if line.startswith("edgevid: error:")]
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "new").exists()  # no partial output
