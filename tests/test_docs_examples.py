"""Every code block of the README and the docs runs as written (or says why not).

A page's blocks run in page order in one empty folder of their own: ``bash``/``sh``/
``console`` blocks with ``bash -euo pipefail`` and this environment's ``edgevid`` first on
PATH, ``python`` blocks with this interpreter. A block is skipped only when the line right
before its fence is ``<!-- doc-test: skip (reason) -->``, and the reason is required.
Blocks in other languages (``text``, ``json``, ``toml``, or none) are shown output or data,
never run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELL = ("bash", "sh", "console", "shell")
PYTHON = ("python", "py")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[\w+-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*doc-test:\s*skip\b(?P<rest>.*?)-->\s*$")
REASON = re.compile(r"^\s*\((?P<reason>[^\s)].*)\)\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the marker's text after "skip" ("" when there is none), None: run

    @property
    def runs(self) -> bool:
        return self.skip is None and self.lang in SHELL + PYTHON

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, in order, with the skip marker before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != m.group("fence"):
            end += 1
        marker = SKIP.match(lines[i - 1]) if i else None
        code = textwrap.dedent("\n".join(lines[i + 1 : end]))
        found.append(Block(page, i + 1, m.group("lang").lower(), code,
                           marker.group("rest").strip() if marker else None))  # fmt: skip
        i = end + 1
    return found


def test_the_extractor_reads_fences_markers_and_indented_blocks(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n```bash\necho a\n```\n<!-- doc-test: skip (needs a GPU) -->\n```python\n"
        "import x\n```\n- item\n\n  ```bash\n  echo b\n  ```\n```\nno language\n```\n"
    )
    got = [(b.lang, b.code, b.skip, b.runs) for b in blocks(page)]
    assert got == [
        ("bash", "echo a", None, True),
        ("python", "import x", "(needs a GPU)", False),
        ("bash", "echo b", None, True),
        ("", "no language", None, False),
    ]


def test_every_skip_says_why():
    unexplained = [b.where() for p in pages() for b in blocks(p)
                   if b.skip is not None and not REASON.match(b.skip)]  # fmt: skip
    assert not unexplained, f"doc-test: skip without a (reason): {unexplained}"


def test_every_page_has_its_blocks_closed():
    for page in pages():
        fences = [ln for ln in page.read_text().splitlines() if FENCE.match(ln)]
        assert len(fences) % 2 == 0, f"{page}: an unclosed code fence"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEVID_RUN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["EDGEVID_CPU_BACKEND"] = "onnxruntime"  # no timing of CPU candidates in the tests
    return env


def run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess:
    cmd = ["bash", "-euo", "pipefail", "-c", block.code] if block.lang in SHELL else None
    cmd = cmd or [sys.executable, "-c", block.code]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


PAGES_WITH_CODE = [p for p in pages() if any(b.runs for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_on_the_page_runs(page, tmp_path):
    for block in blocks(page):
        if not block.runs:
            continue
        r = run_block(block, tmp_path)
        assert r.returncode == 0, (
            f"{block.where()} failed (exit {r.returncode}):\n{block.code}\n"
            f"--- stdout\n{r.stdout[-2000:]}\n--- stderr\n{r.stderr[-3000:]}"
        )
        assert "Traceback" not in r.stderr, f"{block.where()}:\n{r.stderr[-3000:]}"
