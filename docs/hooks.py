"""MkDocs hooks (mkdocs.yml `hooks:`): measured numbers enter the pages from their JSON.

``<!-- benchmarks -->`` becomes every ``benchmarks/results/*.json`` as tables, and
``<!-- demo-table -->`` the demo table from ``benchmarks/results/demo.json``, both through
``benchmarks/report.py``, the one renderer the README's demo table also comes from.
``<!-- benchmark: FILE.json -->`` one of them (where a guide discusses it), and
``<!-- output: edgevid ARGS -->`` becomes what that command prints now (a computed listing,
such as ``edgevid variants``, is never copied into a page by hand). The plots benchmarks
write (``benchmarks/results/*.png``) are served as ``results/NAME.png``: a page shows the
one its benchmark drew last, never a copy.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

_REPORT = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"
_PLOTS = _REPORT.parent / "results"


def on_files(files, config):
    from mkdocs.structure.files import File

    for png in sorted(_PLOTS.glob("*.png")):
        files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
    return files


def _report():
    spec = importlib.util.spec_from_file_location("edgevid_benchmarks_report", _REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ONE = re.compile(r"<!-- benchmark: (?P<file>[\w.-]+\.json) -->")
_OUTPUT = re.compile(r"<!-- output: edgevid (?P<args>[^>]*?) -->")


def _command_output(m: re.Match) -> str:
    cmd = [sys.executable, "-m", "edgevid", *shlex.split(m.group("args"))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return f"```text\n{r.stdout.rstrip()}\n```"


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = _OUTPUT.sub(_command_output, markdown)
    if _ONE.search(markdown):
        results = _REPORT.parent / "results"
        markdown = _ONE.sub(lambda m: _report().render_result(results / m["file"]), markdown)
    if "<!-- benchmarks -->" in markdown:
        markdown = markdown.replace("<!-- benchmarks -->", _report().render_all())
    if "<!-- demo-table -->" in markdown:
        markdown = markdown.replace("<!-- demo-table -->", _report().demo_table())
    return markdown
