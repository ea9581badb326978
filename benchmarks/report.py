"""Markdown tables from the benchmark results: the one place measured numbers become prose.

The docs site renders ``benchmarks/results/*.json`` with :func:`render_result` at build time
(``docs/hooks.py``), and the demo table of the README and the docs comes from
``benchmarks/results/demo.json`` through :func:`demo_table`. Numbers are never typed into
a page: rerun the benchmark, commit its JSON, the pages follow.

    python benchmarks/report.py                     # print every result as Markdown
    python benchmarks/report.py --readme            # rewrite the README's demo table
    python benchmarks/report.py --demo-from DIR     # demo.json from an `edgevid demo --out DIR`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEMO_JSON = RESULTS / "demo.json"
README = ROOT / "README.md"
DEMO_START, DEMO_END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"
MAX_ROWS = 40  # longer lists (per-run records) are summarised, not printed
# The demo's accuracy columns: compared exactly by tests/test_demo.py.
ACCURACY_KEYS = ("acc_fp32", "acc_fp16", "acc_int8")
# The packages whose versions decide the demo's numbers, recorded with them.
PINNED = ("torch", "transformers", "numpy", "opencv-python-headless", "onnxruntime", "onnx",
          "pillow", "accelerate")  # fmt: skip


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) <= 4 and all(not isinstance(x, dict | list) for x in v):
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, dict | list):
        return ""
    return "-" if v is None else str(v).replace("|", "\\|")


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the scalar columns of ``rows`` (columns in first-seen order)."""
    keys = dict.fromkeys(k for r in rows for k in r)
    cols = [c for c in keys if any(_cell(r.get(c)) not in ("", "-") for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def render_result(path: Path) -> str:
    """One results file: its facts (machine, load, settings) and a table per list of rows."""
    doc = json.loads(path.read_text())
    if isinstance(doc, list):
        doc = {"rows": doc}
    script = f"benchmarks/{path.stem.split('_quiet')[0].rsplit('_prune', 1)[0]}.py"
    parts = [f"### `{path.name}`", ""]
    if (ROOT / script).is_file():
        parts += [f"Written by `{script}`.", ""]
    facts = {}
    for key, value in doc.items():
        if isinstance(value, dict) and all(_cell(v) != "" for v in value.values()):
            facts.update({f"{key}.{k}": v for k, v in value.items()})
        elif _cell(value) != "":
            facts[key] = value
    if facts:
        parts += [table([{"fact": k, "value": v} for k, v in facts.items()]), ""]
    for key, value in doc.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            parts += [f"`{key}`:", ""]
            if len(value) > MAX_ROWS:
                parts += [f"{len(value)} records: see the JSON file.", ""]
            else:
                parts += [table(value), ""]
    return "\n".join(parts)


def render_all(results: Path = RESULTS) -> str:
    return "\n".join(render_result(p) for p in sorted(results.glob("*.json")))


# --- the demo table -------------------------------------------------------------------------
def demo_document(results_json: Path) -> dict[str, Any]:
    """``demo.json`` from an ``edgevid demo`` output's results.json, plus where it ran."""
    demo = json.loads(results_json.read_text())
    keep = ("model", "variant", "layers", "params", "size_mb_fp32")
    rows = [
        {k: r[k] for k in keep}
        | {k: r[k] for k in r if k.startswith(("acc_", "ms_", "size_mb_")) and k in r}
        for r in demo["rows"]
    ]
    versions = {}
    for name in PINNED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": "edgevid demo",
        "rows": rows,
        "seconds": demo["seconds"],
        "versions": versions,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                    "platform": platform.platform(), "load_average_at_end": os.getloadavg(),
                    # the training's float sums follow PyTorch's CPU kernels (AVX2, AVX512...)
                    "cpu_capability": _cpu_capability()},
    }  # fmt: skip


def _cpu_capability() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.backends.cpu.get_cpu_capability()


def demo_table(doc: dict[str, Any] | None = None) -> str:
    """The README/docs demo table from ``demo.json`` (the demo's own results format)."""
    from edgevid.demo import results_markdown

    doc = doc if doc is not None else json.loads(DEMO_JSON.read_text())
    return results_markdown(doc["rows"]).strip()


def with_demo_table(text: str, doc: dict[str, Any] | None = None) -> str:
    """``text`` with the table between the demo-table markers replaced by the current one."""
    head, rest = text.split(DEMO_START, 1)
    _, tail = rest.split(DEMO_END, 1)
    return f"{head}{DEMO_START}\n{demo_table(doc)}\n{DEMO_END}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", action="store_true", help="Rewrite README.md's demo table.")
    ap.add_argument("--demo-from", type=Path, help="An edgevid demo --out folder -> demo.json.")
    args = ap.parse_args()
    if args.demo_from:
        doc = demo_document(args.demo_from / "results.json")
        DEMO_JSON.write_text(json.dumps(doc, indent=2) + "\n")
        print(demo_table(doc))
        print(f"wrote {DEMO_JSON}", file=sys.stderr)
    if args.readme:
        README.write_text(with_demo_table(README.read_text()))
        print(f"wrote {README}", file=sys.stderr)
    if not (args.readme or args.demo_from):
        print(render_all())


if __name__ == "__main__":
    main()
