"""What a plan writes: the table, the Pareto PNG, the JSON report, the recommended artefact and
the exact ``edgevid run`` command that runs it (every file atomic, edgevid._atomic)."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from edgevid._atomic import atomic_path, write_json, write_text
from edgevid.core.artifact import sidecar_path
from edgevid.plan.search import Constraints, Row, Selection, accuracy_drop, violations
from edgevid.plan.space import BACKENDS


def _cell(v: float | None, spec: str) -> str:
    return "-" if v is None else spec.format(v)


def table_markdown(rows: Sequence[Row], skipped: dict[str, str], sel: Selection,
                   c: Constraints, baseline: float | None) -> str:  # fmt: skip
    """Every candidate, measured or skipped, best first; the pick and the front marked."""
    head = ["candidate", "top-1", "drop (pts)", "p50 ms", "p95 ms", "clips/s", "RSS MB", "MB",
            "verdict"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    pick = sel.pick or sel.miss
    for r in sorted(rows, key=lambda r: (-(r.accuracy or -1), r.p95_ms, r.name)):
        broken = violations(r, c, baseline)
        verdict = "; ".join(broken) if broken else "feasible"
        if r is pick:
            verdict = "**recommended**" if sel.pick else "**nearest miss**: " + verdict
        cells = [r.name, _cell(r.accuracy, "{:.3f}"), _cell(accuracy_drop(r, baseline), "{:+.1f}"),
                 f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}", f"{r.clips_per_s:.1f}",
                 f"{r.rss_mb:.0f}", f"{r.size_mb:.1f}", verdict]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    for name, why in skipped.items():
        lines.append(f"| {name} | " + " | ".join(["-"] * (len(head) - 2)) + f" | skipped: {why} |")
    return "\n".join(lines) + "\n"


def plot_pareto(
    rows: Sequence[Row],
    front: Sequence[Row],
    sel: Selection,
    c: Constraints,
    baseline: float | None,
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """Accuracy vs p95 latency of every measured candidate: the Pareto front as a line, the
    budget (vertical) and the accuracy floor (horizontal) dashed, the pick starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    scored = [r for r in rows if r.accuracy is not None]
    backends = list(dict.fromkeys(r.candidate.backend for r in scored))
    precisions = sorted({r.candidate.precision for r in scored})
    markers = dict(zip(backends, "osD^v<>", strict=False))
    for r in scored:
        color = f"C{precisions.index(r.candidate.precision)}"
        ax.scatter(r.p95_ms, r.accuracy, marker=markers[r.candidate.backend], s=170,
                   color=color, alpha=0.75)  # fmt: skip
        # the prune level, inside the marker
        ax.annotate(f"p{r.candidate.drop}", (r.p95_ms, r.accuracy), fontsize=6.5, ha="center",
                    va="center", color="white", weight="bold")  # fmt: skip
    if front:
        ax.plot([r.p95_ms for r in front], [r.accuracy for r in front], "k-", lw=1,
                label="Pareto front")  # fmt: skip
    ax.axvline(c.budget_ms, color="red", ls="--", lw=1, label=f"budget {c.budget_ms:.0f} ms")
    floor = None if baseline is None else baseline - c.max_drop / 100
    if floor is not None:
        ax.axhline(floor, color="purple", ls="--", lw=1, label=f"floor {floor:.3f} "
                   f"(unpruned FP32 - {c.max_drop:g} pts)")  # fmt: skip
    best = sel.pick or sel.miss
    if best is not None and best.accuracy is not None:
        ax.scatter(best.p95_ms, best.accuracy, marker="*", s=300, facecolors="none",
                   edgecolors="gold" if sel.pick else "grey", linewidths=2,
                   label=("recommended: " if sel.pick else "nearest miss: ")
                   + best.name)  # fmt: skip
    for b in backends:  # legend entries for the marker shapes
        ax.scatter([], [], marker=markers[b], color="grey", label=b)
    for i, p in enumerate(precisions):
        ax.scatter([], [], marker="s", color=f"C{i}", label=p)
    ax.scatter([], [], marker="", label="pN: prune level N (p0: unpruned)")
    lows = [r.accuracy for r in scored] + ([floor] if floor is not None else [])
    if lows:  # accuracy is in [0, 1]: a floor below 0 (a huge --max-drop) is off the chart
        ax.set_ylim(max(0.0, min(lows) - 0.05), min(1.02, max(lows) + 0.05))
    ax.set_xscale("log")
    ax.set_xlabel(f"p95 latency per inference (ms, batch of {c.streams}, log scale)")
    ax.set_ylabel("top-1 accuracy (eval split)")
    ax.set_title(title or "edgevid plan: accuracy vs latency on this device")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(path)


def publish_model(graph: Path, out: Path) -> Path:
    """Copy ``graph`` with its sidecar (and ONNX external data) into ``out``, each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for f in (graph.with_name(graph.name + ".data"), sidecar_path(graph), graph):  # graph last
        if f.is_file():
            with atomic_path(out / f.name) as tmp:
                shutil.copyfile(f, tmp)
    return out / graph.name


def run_command(model: Path, row: Row, sources: Sequence[str], every: int) -> list[str]:
    """``edgevid run`` with the backend, precision and threads the row was measured with."""
    cmd = ["edgevid", "run"]
    for s in sources:
        cmd += ["--source", s]
    cmd += ["--model", str(model), "--every", str(every)]
    return cmd + BACKENDS[row.candidate.backend].run_args(row.candidate.threads)


def row_dict(r: Row, c: Constraints, baseline: float | None) -> dict:
    return {"name": r.name, **asdict(r.candidate), "accuracy": r.accuracy,
            "drop_pts": accuracy_drop(r, baseline), "p50_ms": r.p50_ms, "p95_ms": r.p95_ms,
            "clips_per_s": r.clips_per_s, "rss_mb": r.rss_mb, "size_mb": r.size_mb,
            "violations": violations(r, c, baseline), **r.extra}  # fmt: skip


def write_report(path: Path, rows: Sequence[Row], skipped: dict[str, str], sel: Selection,
                 front: Sequence[Row], c: Constraints, baseline: float | None,
                 command: list[str] | None, machine: dict) -> Path:  # fmt: skip
    best = sel.pick or sel.miss
    return write_json(path, {
        "constraints": asdict(c),
        "baseline_accuracy": baseline,
        "recommendation": best.name if sel.pick else None,
        "nearest_miss": sel.miss.name if sel.miss else None,
        "message": sel.message,
        "command": shlex.join(command) if command else None,
        "model": best.extra.get("model") if best else None,
        "pareto_front": [r.name for r in front],
        "candidates": [row_dict(r, c, baseline) for r in rows],
        "skipped": skipped,
        "machine": machine,
    })  # fmt: skip


def write_table(path: Path, text: str) -> Path:
    return write_text(path, text)
