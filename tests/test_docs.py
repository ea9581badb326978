"""The documentation site builds with warnings as errors, every page is reachable, and the
numbers it shows come from the benchmark JSON (README included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]


def nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += nav_pages(value) if isinstance(value, list) else [value]
    return out


def mkdocs_config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.SafeLoader)


def test_every_docs_page_is_in_the_nav():
    listed = set(nav_pages(mkdocs_config()["nav"]))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages == listed


def test_the_readme_demo_table_is_generated_from_the_results_file():
    text = (ROOT / "README.md").read_text()
    assert report.with_demo_table(text) == text, "run: python benchmarks/report.py --readme"
    doc = json.loads(report.DEMO_JSON.read_text())
    for row in doc["rows"]:  # and the table shows the file's accuracies
        cells = f"| {row['model']} | {row['variant']} | {row['layers']} |"
        line = next(ln for ln in text.splitlines() if ln.startswith(cells))
        assert all(f" {row[k]:.3f} " in line for k in report.ACCURACY_KEYS)


@pytest.mark.slow
def test_the_site_builds_strict_with_generated_pages(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "WARNING" not in r.stderr
    bench = (site / "benchmarks" / "index.html").read_text()
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert path.name in bench  # every results file has its section
    triton = json.loads((ROOT / "benchmarks" / "results" / "bench_triton.json").read_text())
    assert f"<td>{triton['rows'][0]['p50']:.4g}</td>" in bench  # numbers from the JSON
    cli = (site / "cli" / "index.html").read_text()
    for command in ("checks", "run", "bench", "eval", "export", "variants"):
        assert f"edgevid {command}" in cli  # the reference is generated from click
    assert "--config" in cli and "EDGEVID_RUN_" in cli
    api = (site / "api" / "index.html").read_text()
    assert "Classifier" in api and "create_model" in api  # from the docstrings
    models = (site / "guide" / "models" / "index.html").read_text()
    assert "GFLOPs" in models and "prune8" in models  # edgevid variants, run at build time
    assert "Unreleased" in (site / "changelog" / "index.html").read_text()


def test_the_plan_page_shows_the_plan_benchmark_as_measured():
    """docs/plan.md's real plan is bench_plan.json's: its table, its line, its machine."""
    text = (ROOT / "docs" / "plan.md").read_text()
    doc = json.loads((ROOT / "benchmarks" / "results" / "bench_plan.json").read_text())
    assert doc["table_md"].strip() in text, "paste table_md of bench_plan.json into docs/plan.md"
    assert " ".join(doc["selection"]["message"].split()) in " ".join(text.split())
    assert doc["machine"]["cpu"] in text


@pytest.mark.parametrize("name", ["bench_capacity.json", "bench_capacity_scratch.json"])
def test_the_multi_camera_page_shows_the_capacity_benchmark_as_measured(name):
    doc = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
    text = (ROOT / "docs" / "multi-camera.md").read_text()
    assert doc["cpu"] in text and name in text
    for row in doc["runs"]:  # every measured run is a row of the page's tables, as measured
        values = (row["streams"], row["active"], row["gate"], f"{row['fps_per_stream_min']:.1f}",
                  row["frames_dropped_steady"], row["windows_dropped_active_steady"],
                  f"{row['latency_p95_ms']:.0f}")  # fmt: skip
        cells = "| " + " | ".join(map(str, values)) + " |"
        assert cells in text, cells
    marginal = doc.get("still_stream_marginal")
    if marginal:
        assert f"{100 * marginal['cores_per_still_stream']:.1f}% of one core" in text
