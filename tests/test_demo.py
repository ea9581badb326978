"""`edgevid demo` end to end, shrunk: every stage runs for real on a handful of clips."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgevid.runtime.video import probe_video
from tests.conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.slow]


def test_demo_runs_every_stage(tmp_path, media_dir):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "edgevid", "demo", "--out", str(out), "--epochs", "1",
           "--clips-per-class", "6", "--media", str(media_dir), "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in results["rows"]] == ["timesformer", "scratch", "pruned"]
    for row in results["rows"]:
        for precision in ("fp32", "fp16", "int8"):
            assert 0.0 <= row[f"acc_{precision}"] <= 1.0 and row[f"ms_{precision}"] > 0
            assert (out / row[f"file_{precision}"]).is_file()  # absolute paths stay absolute
    pruned = results["rows"][2]
    assert pruned["layers"] == 4 and pruned["variant"] == "tiny-prune8"
    assert (out / "results.md").read_text().count("\n| ") >= 4  # header rule + 3 models
    videos = [p for k, p in results["artefacts"].items() if k.startswith("annotated:")]
    assert len(videos) == 2  # the synthetic test video and one real clip
    for video in videos:
        assert probe_video(video).num_frames > 0
        lines = (out / "runtime" / f"{video.rsplit('/', 1)[-1][:-4]}.jsonl").read_text()
        first = json.loads(lines.splitlines()[0])
        assert {"label", "score", "frame", "top_k"} <= set(first)
