"""docs/python-api.md runs as written: its blocks, in order, in a fresh folder (the page makes
its own model and video), and every name it imports from edgevid.runtime is exported."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgevid.runtime
from tests.conftest import ROOT, needs_torch

PAGE = ROOT / "docs" / "python-api.md"
SKIP = re.compile(r"<!-- doc-test: skip \((.+?)\) -->\s*$")


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, code, skip reason or None) of every fenced block of ``page``."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in re.finditer(r"^```(\w+)\n(.*?)^```", text, re.S | re.M):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.match(before)
        found.append((m.group(1), m.group(2), skip.group(1) if skip else None))
    return found


def test_every_name_the_page_imports_is_exported():
    names = set()
    for lang, code, _ in blocks(PAGE):
        if lang == "python":
            for m in re.finditer(r"^from edgevid\.runtime import (.+)$", code, re.M):
                names |= {n.strip() for n in m.group(1).split(",")}
    assert names and names <= set(edgevid.runtime.__all__), names - set(edgevid.runtime.__all__)
    for name in edgevid.runtime.__all__:
        assert getattr(edgevid.runtime, name) is not None


def test_every_block_runs_or_says_why_not():
    kinds = {(lang, skip is not None) for lang, _, skip in blocks(PAGE)}
    assert kinds <= {("bash", False), ("python", False), ("python", True)}, kinds


@needs_torch
@pytest.mark.slow  # the page's own export: about a minute on 2 cores
def test_the_page_runs_as_written(tmp_path):
    pytest.importorskip("onnx")
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": bin_dir + os.pathsep + os.environ["PATH"],
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
    ran = 0
    for i, (lang, code, skip) in enumerate(blocks(PAGE)):
        if skip is not None:
            continue
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable]
        r = subprocess.run(cmd, input=None if lang == "bash" else code, cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, f"block {i} ({lang}):\n{code}\n{r.stderr}"
        ran += 1
    assert ran >= 9
    assert (tmp_path / "last.png").is_file() and (tmp_path / "annotated.mp4").is_file()
