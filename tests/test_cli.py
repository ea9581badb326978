"""The edgevid command: help, version, data commands and their error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgevid import __version__
from edgevid.cli import main
from tests.conftest import needs_torch


def run(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "edgevid", *args], capture_output=True, text=True, timeout=300
    )


def assert_clean_error(r: subprocess.CompletedProcess, fragment: str) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("edgevid: error:") and fragment in lines[0]
    assert "Traceback" not in r.stderr


def test_version_and_help():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for cmd in ("data", "variants"):
        assert cmd in r.output


@needs_torch
def test_variants_table_and_json():
    from edgevid.train.models import list_models, model_spec

    r = CliRunner().invoke(main, ["variants", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)}
    full = [n for n in list_models() if not n.startswith("tiny-")]
    assert list(rows) == full  # every full-size variant of the registry, tiny-* with --all
    assert all(rows[n]["layers"] == model_spec(n).num_layers for n in full)
    assert rows["timesformer"]["params"] > 1e8
    r = CliRunner().invoke(main, ["variants", "--all"])
    assert r.exit_code == 0 and "tiny-prune8" in r.output and "GFLOPs" in r.output


def test_data_synth_split_inspect(tmp_path):
    out = tmp_path / "d"
    r = CliRunner().invoke(
        main, ["data", "synth", str(out), "--classes", "3", "--clips-per-class", "6"]
    )
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*/*.mp4"))) == 18
    r = CliRunner().invoke(main, ["data", "split", str(out), "--seed", "1"])
    assert r.exit_code == 0 and (out / "manifest.json").is_file()
    r = CliRunner().invoke(main, ["data", "inspect", str(out / "manifest.json"), "--json"])
    report = json.loads(r.output)
    assert sum(report["totals"].values()) == 18 and report["leaked_groups"] == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["data", "inspect", "/no/such/dataset"], "dataset folder not found"),
        (["data", "split", "/no/such/dataset"], "dataset folder not found"),
        (["data", "synth", "OUT", "--classes", "12"], "12 is not in the range 2<=x<=8"),
        (["data", "synth", "OUT", "--size", "big"], "--size must look like"),
        (["data", "split", ".", "--ratios", "1,2"], "must be three numbers"),
    ],
)
def test_bad_input_gives_one_line(tmp_path, args, fragment):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    r = run(*args)
    assert_clean_error(r, fragment)
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2_without_traceback():
    r = run("data", "synth")
    assert r.returncode == 2 and "Missing argument" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_torch_threads_wait_passively_unless_the_user_says(preset):
    """The policy must be in the environment before torch is first imported (spinning
    OpenMP threads take the cores from the jobs beside them); a user's setting wins."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import os, sys; import edgevid.cli; assert 'torch' not in sys.modules; "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (preset or "PASSIVE")
