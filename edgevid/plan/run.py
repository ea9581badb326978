"""``edgevid plan`` as a function: build -> measure (cached, resumable) -> select -> report.

    teacher checkpoint + dataset
      -> levels: unpruned + every registry prune level below it (importance + distillation)
      -> graphs: fp32 / int8 ... per level (edgevid export, verified)
      -> rows: each candidate measured in a child process, most-pruned first; a candidate a
         smaller model of its kind already failed (budget, memory) is skipped unmeasured
      -> select (search.py, pure) -> PLAN/plan.{json,md}, PLAN/pareto.png, PLAN/<model>.onnx

Everything slow lives under PLAN/work and is reused: run the same command again after a
Ctrl-C and it continues where it stopped.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgevid.errors import DataError, ModelError
from edgevid.plan import report, search
from edgevid.plan.search import Candidate, Constraints, Row, Selection
from edgevid.plan.space import (
    DEFAULT_PRECISIONS,
    QUICK_PRECISIONS,
    available_backends,
    candidates,
)

Log = Callable[[str], None]


@dataclass
class PlanConfig:
    checkpoint: Path  # the trained, unpruned model (RUN/best)
    data: Path  # dataset folder or manifest: pruning, calibration, the eval split
    constraints: Constraints  # budget, accuracy floor, memory, streams
    out: Path = Path("plan")  # PLAN/: report, plot, the recommended model; PLAN/work: the rest
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS  # graph precisions to try
    backends: tuple[str, ...] | None = None  # None: every backend this machine has
    threads: tuple[int | None, ...] = (os.cpu_count() or 1,)  # CPU thread counts to try
    levels: tuple[int, ...] | None = None  # layers dropped to try (None: the registry's)
    recover_epochs: int = 3  # distillation epochs after pruning
    lr: float = 1e-4  # recovery learning rate
    rounds: int = 20  # timed inferences per candidate
    calib_clips: int = 32  # INT8 calibration clips
    split: str = "test"  # the eval split accuracy is measured on
    sources: tuple[str, ...] = ("/dev/video0",)  # what the printed command reads
    every: int = 8  # one inference every K frames, in the printed command
    progress: bool = True  # progress bars

    @classmethod
    def quick(cls, **kw) -> PlanConfig:
        """Tiny search for the demo (QUICK), then ``kw``."""
        return cls(**{**QUICK, **kw})


# --quick: two prune levels (and the unpruned model), no calibration, one recovery epoch
QUICK = dict(precisions=QUICK_PRECISIONS, levels=(4, 8), recover_epochs=1, lr=1e-3, rounds=10,
             calib_clips=8)  # fmt: skip


@dataclass
class PlanResult:
    rows: list[Row]  # every measured candidate
    skipped: dict[str, str]  # candidate name -> why it was not measured
    selection: Selection
    baseline: float | None  # top-1 of the unpruned FP32 graph on ONNX Runtime
    model: Path | None  # the recommended (or nearest-miss) model copied into PLAN/
    command: list[str] | None  # the `edgevid run` command for it
    files: dict[str, Path] = field(default_factory=dict)  # report, table, plot


def plan(cfg: PlanConfig, log: Log = print) -> PlanResult:
    from edgevid.core.manifest import load_or_split
    from edgevid.core.meta import ModelMeta
    from edgevid.plan.build import claim_work, exported_graphs, prune_levels, pruned_checkpoint
    from edgevid.plan.measure import cached_row
    from edgevid.progress import bar

    c = cfg.constraints
    work = Path(cfg.out) / "work"
    teacher = ModelMeta.load(cfg.checkpoint)  # a missing checkpoint fails here, before work
    manifest = load_or_split(cfg.data)
    if not manifest.paths(cfg.split):
        raise DataError(f"{cfg.data}: the {cfg.split} split is empty; accuracy needs clips")
    levels = [0] + [d for d, _ in prune_levels(teacher.variant, cfg.levels)]
    claim_work(work)
    manifest_file = manifest.save(work / "manifest.json")
    here = available_backends()
    backends = [b for b in (cfg.backends or here) if b in here]
    if not backends:
        raise ModelError(f"none of the backends {', '.join(cfg.backends or ())} is available here")
    space = candidates(levels, cfg.precisions, backends, cfg.threads)
    baseline_cand = Candidate(0, "fp32", "onnxruntime", cfg.threads[0])
    order = [baseline_cand] + [k for k in search.search_order(space) if k != baseline_cand]
    checkpoints: dict[int, Path] = {}
    graphs: dict[int, dict[str, Path]] = {}

    def graph(k: Candidate) -> Path:
        if k.drop not in graphs:
            log(f"preparing prune level {k.drop} (pruning, recovery, export; reused if done)")
            ckpt = checkpoints.setdefault(k.drop, pruned_checkpoint(
                cfg.checkpoint, manifest, work, k.drop, cfg.recover_epochs, cfg.lr,
                cfg.progress, log))  # fmt: skip
            need = sorted({x.precision for x in space if x.drop == k.drop} | {"fp32"})
            graphs[k.drop] = exported_graphs(ckpt, work, k.drop, need, manifest_file,
                                             cfg.calib_clips, log)  # fmt: skip
        return graphs[k.drop][k.precision]

    rows: list[Row] = []
    skipped: dict[str, str] = {}
    with bar(total=len(order), desc="plan candidates", disable=not cfg.progress) as shown:
        for k in order:
            why = None if k == baseline_cand else search.skip_reason(k, rows, c)
            if why is not None:
                skipped[k.name] = why
                shown.update(1)
                continue
            try:
                row, cached = cached_row(graph(k), k, work / "measurements", streams=c.streams,
                                         rounds=cfg.rounds, manifest=manifest_file,
                                         split=cfg.split)  # fmt: skip
            except ModelError as e:  # one engine failing costs its row, not the plan
                if k == baseline_cand:
                    raise
                skipped[k.name] = f"failed: {e}"
                log(f"  {k.name}: {skipped[k.name]}")
                shown.update(1)
                continue
            rows.append(row)
            shown.set_postfix(last=k.name.replace(" ", "/"))
            shown.update(1)
            if not cached:
                log(f"  {k.name}: p95 {row.p95_ms:.1f} ms, top-1 {row.accuracy}")
    baseline = rows[0].accuracy
    return finish(cfg, rows, skipped, baseline)


def finish(
    cfg: PlanConfig, rows: list[Row], skipped: dict[str, str], baseline: float | None
) -> PlanResult:
    """Select and write PLAN/: also the end of a plan whose rows were measured elsewhere
    (benchmarks/bench_plan.py: full-size latency with tiny-model accuracy)."""
    c, out = cfg.constraints, Path(cfg.out)
    sel = search.select(rows, c, baseline)
    front = search.pareto_front(rows)
    best = sel.pick or sel.miss
    model = command = None
    if best is not None and "model" in best.extra:
        model = report.publish_model(Path(best.extra["model"]), out)
        command = report.run_command(model, best, cfg.sources, cfg.every)
    files = {
        "table": report.write_table(out / "plan.md",
                                    report.table_markdown(rows, skipped, sel, c, baseline)),
        "plot": report.plot_pareto(rows, front, sel, c, baseline, out / "pareto.png"),
        "report": report.write_report(out / "plan.json", rows, skipped, sel, front, c, baseline,
                                      command, machine_info()),
    }  # fmt: skip
    return PlanResult(rows, skipped, sel, baseline, model, command, files)


def machine_info() -> dict:
    """Where the numbers were measured, and how busy the machine was."""
    from edgevid.runtime.backends.choice import _cpu_name

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
            "load_avg": [round(x, 2) for x in load] if load else None}  # fmt: skip
