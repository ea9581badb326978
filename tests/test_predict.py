"""The two-line API: `edgevid.predict(source, model)` and `Classifier` taking every model form,
from a file, a training run folder or an export."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevid.runtime.classifier import Classifier
from tests.conftest import ROOT, needs_torch

onnx = pytest.importorskip("onnx", reason="test graphs need the export extra (onnx)")

BLOCK_TORCH = "import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'transformers')]"


@pytest.fixture()
def world(tiny_onnx, tiny_checkpoint, tmp_path) -> Path:
    """An export folder, a training run folder and an untrimmed video, in a fresh folder."""
    from edgevid.train.synth import make_untrimmed_video

    (tmp_path / "exports").mkdir()
    shutil.copy(tiny_onnx, tmp_path / "exports" / "motion3.onnx")
    shutil.copy(tiny_onnx.with_suffix(".json"), tmp_path / "exports" / "motion3.json")
    shutil.copytree(tiny_checkpoint, tmp_path / "runs" / "motion3" / "best")
    make_untrimmed_video(tmp_path / "untrimmed.mp4", classes=3, segments=3, seed=0)
    return tmp_path


def run_snippet(code: str, cwd: Path, prelude: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / "cache"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", prelude + "\n" + code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


STREAM = """
from edgevid.runtime import Classifier, stream

clf = Classifier("exports/motion3.onnx")
print(clf.predict("untrimmed.mp4").label)
for r in stream("untrimmed.mp4", clf, every=8):
    print(r.frame, r.label, round(r.score, 3))
"""

PREDICT = """
import edgevid

r = edgevid.predict("untrimmed.mp4", "runs/motion3")
print(r.label, round(r.score, 3), len(r.results), "windows")
"""


def test_stream_from_an_export_runs_without_torch(world):
    proc = run_snippet(STREAM, world, BLOCK_TORCH)  # the runtime alone: torch blocked
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    labels = {"Grow", "MoveDown", "MoveLeft", "MoveRight", "MoveUp"}
    assert lines[0] in labels  # Classifier.predict(path)
    assert len(lines) > 10 and all(line.split()[1] in labels for line in lines[1:])


@needs_torch
@pytest.mark.slow  # exports the run's checkpoint on the fly in a subprocess: ~17 s
def test_predict_on_a_training_run_exports_it_once(world):
    """A training run folder as the model: exported once on the fly, cached."""
    proc = run_snippet(PREDICT, world)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"\w+ \d\.\d+ \d+ windows", proc.stdout.splitlines()[0]), proc.stdout
    assert list((world / "cache" / "edgevid" / "checkpoint-onnx").rglob("*.onnx"))


def test_predict_is_torch_free_and_returns_windows_and_segments(tiny_onnx, media_dir):
    code = (
        f"{BLOCK_TORCH}\nimport edgevid\n"
        f"r = edgevid.predict({str(media_dir / 'carphone_pristine.mp4')!r}, {str(tiny_onnx)!r})\n"
        "import json; print(json.dumps(r.to_json()))\n"
        "assert not [m for m, v in sys.modules.items() if v is not None\n"
        "            and m.split('.')[0] in ('torch', 'transformers', 'onnx')]"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert out["windows"] == 15 and set(out) == {"label", "score", "top_k", "windows", "segments"}
    # the clip-level label is the top class of the mean window probabilities
    from edgevid.runtime.predict import predict

    r = predict(media_dir / "carphone_pristine.mp4", tiny_onnx)
    mean = np.mean([w.probs for w in r.results], axis=0)
    assert r.label == Classifier(tiny_onnx).labels[int(np.argmax(mean))]
    assert r.label == out["label"] and r.score == pytest.approx(float(mean.max()), abs=1e-5)


def test_classifier_takes_a_path_and_an_export_folder(tiny_onnx, media_dir, tmp_path):
    from edgevid.core.video import read_video

    folder = tmp_path / "exports"
    folder.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(tiny_onnx.with_suffix(suffix), folder / f"tiny{suffix}")
    clip = media_dir / "bikes.mp4"
    by_path = Classifier(folder).predict(clip)  # was: shape () error
    frames, _ = read_video(clip)
    np.testing.assert_allclose(by_path.probs, Classifier(tiny_onnx).predict(frames).probs,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    images = tmp_path / "images"
    images.mkdir()
    from edgevid.core._cv import cv2

    for i, f in enumerate(frames[:40]):
        cv2.imwrite(str(images / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    np.testing.assert_allclose(Classifier(tiny_onnx).predict(images).probs,
                               Classifier(tiny_onnx).predict(frames[:40]).probs,
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_checkpoint_without_torch_is_one_clear_error(tiny_checkpoint, media_dir):
    code = (
        f"{BLOCK_TORCH}\nfrom edgevid.cli import main\n"
        f"main(['run', '-s', {str(media_dir / 'bikes.mp4')!r}, '-m', {str(tiny_checkpoint)!r}])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "a training checkpoint" in err and "edgevid export --checkpoint" in err


def test_empty_folder_is_one_clear_error(tmp_path):
    from edgevid.errors import ModelError

    with pytest.raises(ModelError, match="no model in this folder"):
        Classifier(tmp_path)
