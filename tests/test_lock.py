"""The lock (requirements/lock.txt) covers what pyproject asks for, and is what the README's
install commands and CI use."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from edgevid.cli._options import read_toml

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
# Extras for hardware the reference machine has not (a GPU's TensorRT) or peers only the
# CPU benchmark installs: their packages are not in the lock.
UNLOCKED_EXTRAS = {"trt", "bench"}


def pins() -> dict[str, str]:
    found = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"lock line is not NAME==VERSION: {line!r}"
            found[canonicalize_name(name)] = version
    return found


def requirements() -> list[Requirement]:
    project = read_toml(ROOT / "pyproject.toml")["project"]
    reqs = list(project["dependencies"])
    for extra, deps in project["optional-dependencies"].items():
        reqs += [] if extra in UNLOCKED_EXTRAS else deps
    return [Requirement(r) for r in reqs]


def test_every_dependency_is_pinned_to_a_version_it_accepts():
    locked = pins()
    for req in requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue  # e.g. tomli below Python 3.11
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in {LOCK.name}: rerun scripts/lock.sh"
        assert req.specifier.contains(locked[name], prereleases=True), (req, locked[name])


def test_the_lock_names_releases_and_keeps_torch_at_its_pin():
    locked = pins()
    assert locked["torch"] == "2.13.0"  # the CPU build's "+cpu" label is not a release
    assert not [v for v in locked.values() if "+" in v]
    assert "edgevid" not in locked


def test_the_readme_and_ci_install_with_the_lock():
    readme = (ROOT / "README.md").read_text()
    installs = re.findall(r"pip install [^\n&]*-e \"\.\[", readme)
    assert len(installs) == 2 and all("-c requirements/lock.txt" in i for i in installs)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -c requirements/lock.txt -e" in ci
