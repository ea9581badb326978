"""MkDocs hooks (mkdocs.yml `hooks:`): measured numbers enter the pages from their JSON.

``<!-- benchmarks -->`` becomes every ``benchmarks/results/*.json`` as tables, and
``<!-- demo-table -->`` the demo table from ``benchmarks/results/demo.json``, both through
``benchmarks/report.py``, the one renderer the README's demo table also comes from.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_REPORT = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"


def _report():
    spec = importlib.util.spec_from_file_location("edgevid_benchmarks_report", _REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- benchmarks -->" in markdown:
        markdown = markdown.replace("<!-- benchmarks -->", _report().render_all())
    if "<!-- demo-table -->" in markdown:
        markdown = markdown.replace("<!-- demo-table -->", _report().demo_table())
    return markdown
