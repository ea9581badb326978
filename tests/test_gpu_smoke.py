"""benchmarks/gpu_smoke.py where there is no CUDA (CI, this machine): one line, exit 0.
On a CUDA machine it is run by hand (see its docstring); its last report is
benchmarks/results/gpu_smoke.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_it_says_so_in_one_line(tmp_path):
    out = tmp_path / "smoke.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_smoke.py"), "--json",
                        str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr
    (line,) = r.stdout.strip().splitlines()
    assert line.startswith("gpu_smoke: no CUDA device or library here (")
    assert line.endswith("; nothing to check")
    assert not out.exists()  # nothing measured, nothing written


def test_the_recorded_gpu_run_passed_every_check():
    """The committed report of the last GPU run: every CUDA-layer check passed there."""
    report = json.loads((ROOT / "benchmarks" / "results" / "gpu_smoke.json").read_text())
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["alloc/free cycles"] == statuses["fp16 input cast"] == "ok"
    assert "FAIL" not in statuses.values()
