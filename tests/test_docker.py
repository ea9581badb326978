"""docker/: no Docker engine runs here, so the images are linted (hadolint) and checked for
what they must do: install edgevid with the runtime it needs, run unprivileged, start
``edgevid run``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[1] / "docker"
FILES = ["Dockerfile", "Dockerfile.jetson"]


@pytest.fixture(scope="module")
def hadolint() -> str:
    # The dev extra installs it beside the interpreter; that folder may not be on PATH.
    beside_python = str(Path(sys.executable).parent)
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=beside_python)
    if exe is None:
        pytest.skip("hadolint not installed (pip install 'edgevid[dev]')")
    return exe


@pytest.mark.parametrize("name", FILES)
def test_hadolint_clean(hadolint, name):
    r = subprocess.run(
        [hadolint, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKER / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_problems(hadolint, tmp_path):
    """The linter really runs: a sloppy Dockerfile fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install curl\n")
    r = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "DL3006" in r.stdout  # untagged base image


@pytest.mark.parametrize("name", FILES)
def test_image_contract(name):
    text = (DOCKER / name).read_text()
    assert re.search(r"^FROM \$\{BASE\}", text, re.M)
    assert re.search(r"^ARG BASE=nvcr\.io/nvidia/\S+:\S+$", text, re.M)  # tagged NVIDIA base
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)  # non-root
    assert 'ENTRYPOINT ["edgevid", "run"]' in text
    assert "torch" not in re.sub(r"#.*", "", text)  # the runtime image carries no torch
    assert "--gpus all" in text or "--runtime nvidia" in text  # usage documented in the file
