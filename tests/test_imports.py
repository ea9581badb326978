"""The import rule (CONTRIBUTING.md, "Architecture"), checked two ways.

1. Statically: every ``import`` in edgevid/ (top level or inside a function) parsed with
   ``ast``, each package against the list of what it may import.
2. Dynamically: importing a torch-free package in a fresh interpreter leaves torch and
   transformers out of ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgevid"

# package -> the edgevid packages it may import (besides itself and the shared base:
# edgevid, edgevid.errors, edgevid._atomic). Nothing else of edgevid.
ALLOWED = {
    "core": set(),
    "runtime": {"core"},
    "calib": {"core"},
    "export": {"core", "calib", "train", "runtime"},
    "train": {"core", "runtime"},
    "plan": {"core", "runtime", "train", "export"},
    "cli": {"core", "runtime", "train", "export", "calib", "plan", "demo"},
    "demo": {"core", "runtime", "train", "export", "plan"},
}
BASE = {"edgevid", "edgevid.errors", "edgevid._atomic", "edgevid.progress"}
# The one exception, lazy and behind require("torch"): edgevid.predict / Classifier given a
# training checkpoint export it to ONNX on the fly where torch is installed.
EXCEPTIONS = {"runtime/predict.py": {"edgevid.export.torch_to_onnx", "edgevid.train.checkpoint"}}
TORCH_FREE = ("core", "runtime", "calib")  # never import torch or transformers
FORBIDDEN_THIRD_PARTY = {"torch", "transformers", "torchvision"}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if _package(p) in ALLOWED)


def test_every_package_is_in_the_rule():
    packages = {_package(p) for p in ROOT.rglob("*.py")} - {
        "",
        "errors",
        "_atomic",
        "progress",
        "__main__",
    }
    assert packages == set(ALLOWED), "add the new package to ALLOWED and CONTRIBUTING.md"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_rule(path):
    pkg = _package(path)
    bad = []
    for line, name in _imports(path):
        top = name.split(".")[0]
        if pkg in TORCH_FREE and top in FORBIDDEN_THIRD_PARTY:
            bad.append(f"{line}: {name} (no torch/transformers in {pkg})")
        if top != "edgevid" or name in BASE:
            continue
        if name in EXCEPTIONS.get(str(path.relative_to(ROOT)), ()):
            continue
        target = name.split(".")[1]
        if target != pkg and target not in ALLOWED[pkg]:
            bad.append(f"{line}: {name} ({pkg} may import {sorted(ALLOWED[pkg]) or 'nothing'})")
    assert not bad, f"{path.relative_to(ROOT)}:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "module",
    ["edgevid.core.clips", "edgevid.core.onnx_file", "edgevid.core.precision",
     "edgevid.runtime.streamer", "edgevid.runtime.classifier", "edgevid.calib.quantize"],
)  # fmt: skip
def test_torch_free_modules_import_without_torch(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_core_imports_no_other_edgevid_package():
    code = (
        "import sys, edgevid.core.meta, edgevid.core.clips, edgevid.core.artifact, "
        "edgevid.core.precision, edgevid.core.manifest\n"
        "other = sorted(m for m in sys.modules if m.startswith('edgevid.') and m.split('.')[1] "
        "not in ('core', 'errors', '_atomic'))\n"
        "print(other); sys.exit(1 if other else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
