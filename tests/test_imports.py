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
    "cli": {"core", "runtime", "train", "export", "calib", "plan", "demo", "checks"},
    "demo": {"core", "runtime", "train", "export", "plan"},
    "checks": {"core"},
}
BASE = {"edgevid", "edgevid.errors", "edgevid._atomic", "edgevid.progress"}
# The one exception, lazy and behind require("torch"): edgevid.predict / Classifier given a
# training checkpoint export it to ONNX on the fly where torch is installed.
# And one torch-free one: a Jetson compiling an FP32 .onnx as FP16 converts it with the
# export's FP16 rules (edgevid.export.fp16 needs onnx only) inside the engine build's child.
EXCEPTIONS = {
    "runtime/resolve.py": {"edgevid.export.torch_to_onnx", "edgevid.train.checkpoint"},
    "runtime/backends/onnx_engine.py": {"edgevid.export.fp16"},
}
TORCH_FREE = ("core", "runtime", "calib")  # never import torch or transformers
FORBIDDEN_THIRD_PARTY = {"torch", "transformers", "torchvision"}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else ""


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _imports(path: Path, runtime_only: bool = False, names: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (``runtime_only``: those
    that execute, not the ones under ``if TYPE_CHECKING:``; ``names``: ``from pkg import x``
    as ``pkg.x``, which is a module when x is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree) if runtime_only else set()
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += (
                [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
                if names
                else [(node.lineno, node.module)]
            )
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
     "edgevid.runtime.streamer", "edgevid.runtime.classifier", "edgevid.calib.quantize",
     "edgevid.runtime.backends.onnx_engine", "edgevid.runtime.backends.engine_cache",
     "edgevid.cli.compile"],
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


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


@pytest.mark.parametrize("package", ["runtime", "core"])
def test_no_import_cycle_within_a_package(package):
    """Module A importing B importing A (at the top or lazily inside a function) is one
    module in two files: the contract lives in neither. TYPE_CHECKING imports do not run."""
    files = sorted((ROOT / package).rglob("*.py"))
    modules = {_module(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, imported in _imports(path, runtime_only=True, names=True):
            # "from pkg import mod" imports mod (pkg is already loaded): the longest known prefix
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])
