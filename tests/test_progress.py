"""Progress: bars on a terminal, plain periodic lines (no escape codes) in a log."""

from __future__ import annotations

import io
import sys

from click.testing import CliRunner

from edgevid import progress
from edgevid.cli import main
from tests.conftest import needs_torch


def test_plain_lines_are_periodic_and_final(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "EVERY_S", 3600.0)
    for _ in progress.bar(range(50), desc="work"):  # not a terminal: a PlainBar
        pass
    assert err.getvalue() == err.getvalue().strip() + "\n"  # one line: the final one
    assert err.getvalue().startswith("work: 50/50 (100%)")
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    err.seek(0)
    err.truncate()
    shown = progress.bar(total=3, desc="steps")
    for _ in range(3):
        shown.update(1)
        shown.set_postfix(loss="0.5")
    shown.close()
    lines = err.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("steps: 3/3 (100%) loss=0.5")
    assert "\x1b" not in err.getvalue() and "\r" not in err.getvalue()


def test_heartbeat_reports_a_step_without_a_count(monkeypatch):
    import time

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "EVERY_S", 0.05)
    with progress.heartbeat("FP32 ONNX"):
        time.sleep(0.3)
    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith("FP32 ONNX: running [") for line in lines)


@needs_torch
def test_training_log_has_no_escape_codes(synth_root, tmp_path):
    result = CliRunner().invoke(main, ["train", "--variant", "tiny-scratch", "--data",
                                       str(synth_root), "--epochs", "2", "--out",
                                       str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    assert "training: 2/2 (100%)" in result.output
