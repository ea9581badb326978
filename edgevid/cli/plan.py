"""``edgevid plan``: which model to deploy on this device, chosen from measurements."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from edgevid.errors import DataError, EdgevidError, require
from edgevid.plan.run import QUICK, PlanConfig
from edgevid.plan.space import BACKENDS, PLAN_PRECISIONS

PATH = click.Path(path_type=Path)


class NoFeasiblePlan(EdgevidError):
    """No candidate meets the constraints: the plan is written, the exit code says so."""

    exit_code = 3


def _csv(values) -> str:
    return ",".join(map(str, values))


def _ints(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: give integers separated by commas") from None


@click.command("plan")
@click.option(
    "--checkpoint", type=PATH, required=True, help="The trained, unpruned TimeSformer (RUN/best)."
)
@click.option(
    "--data",
    type=PATH,
    required=True,
    help="Dataset folder or manifest: pruning, calibration and the eval split.",
)
@click.option(
    "--budget-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="Latency budget of one inference (p95) in ms [default: from --fps/--every].",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Camera frame rate (budget = --every / --fps).",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="One inference every K frames (as `edgevid run --every`).",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Accuracy points the model may lose against the unpruned FP32 one.",
)
@click.option(
    "--streams",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Camera streams, batched into one inference as `edgevid run` batches them.",
)
@click.option(
    "--memory-mb",
    type=click.FloatRange(min=0, min_open=True),
    help="Peak resident memory allowed for the process running the model.",
)
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(PLAN_PRECISIONS),
    help=f"Graph precisions to try (repeatable) [default: {', '.join(PlanConfig.precisions)}; "
    f"--quick: {', '.join(QUICK['precisions'])}].",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(list(BACKENDS)),
    help="Backends to try (repeatable) [default: every one this machine has].",
)
@click.option("--threads", help="CPU thread counts to try, e.g. 1,2 [default: every core].")
@click.option(
    "--levels",
    help="Layers dropped to try, e.g. 4,8 [default: every registry "
    f"level below the model; --quick: {_csv(QUICK['levels'])}].",
)
@click.option(
    "--recover-epochs",
    type=click.IntRange(min=0),
    help=f"Distillation epochs after pruning [default: {PlanConfig.recover_epochs}; "
    f"--quick: {QUICK['recover_epochs']}].",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=2),
    help=f"Timed inferences per candidate [default: {PlanConfig.rounds}; "
    f"--quick: {QUICK['rounds']}].",
)
@click.option(
    "--split",
    type=click.Choice(["val", "test"]),
    default="test",
    show_default=True,
    help="The eval split accuracy is measured on.",
)
@click.option(
    "--source",
    "-s",
    "sources",
    multiple=True,
    help="Source(s) for the printed `edgevid run` command [default: /dev/video0].",
)
@click.option(
    "--quick",
    is_flag=True,
    help=f"Tiny search for the demo: levels {_csv(QUICK['levels'])}, "
    f"{' + '.join(QUICK['precisions'])}, {QUICK['recover_epochs']} recovery epoch(s).",
)
@click.option(
    "--out",
    type=PATH,
    default=Path("plan"),
    show_default=True,
    help="PLAN folder: plan.md, plan.json, pareto.png, the model; work/ is the cache.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def plan(checkpoint, data, budget_ms, fps, every, max_drop, streams, memory_mb, precisions,
         backends, threads, levels, recover_epochs, rounds, split, sources, quick, out,
         quiet) -> None:  # fmt: skip
    """Choose the model for this device: prune level x precision x backend x threads,
    each measured here, the most accurate one within a latency budget and an accuracy floor.

    \b
    Every candidate is built (importance pruning + distillation, export, verification) and
    measured on this machine with the runtime's own backends: top-1 on the eval split (and
    the drop against the unpruned FP32 model), p50/p95 ms of one inference of a batch of
    --streams clips, clips/s, peak RSS, file size. A candidate is feasible when its p95 is
    within the budget, its drop within --max-drop and its RSS within --memory-mb. Candidates
    run most-pruned first: a smaller model of the same kind already over the budget skips
    the larger ones. Everything is cached in PLAN/work: after Ctrl-C, run the same command
    again to resume. Exit code 3: nothing meets the constraints (the nearest miss is written
    and named).
    \b
    Writes PLAN/plan.md (table), plan.json (report), pareto.png (accuracy vs latency, budget
    and floor drawn), the recommended model, and prints the `edgevid run` command for it.
    \b
    Examples:
      edgevid plan --checkpoint runs/tsf/best --data data/ucf5 --fps 30 --every 8
      edgevid plan --checkpoint runs/tsf/best --data data/ucf5 --budget-ms 100 --max-drop 2 \\
          --streams 4 --memory-mb 1024 --threads 1,2 --out plan-4cams
      edgevid plan --quick --checkpoint demo/runs/timesformer/best --data demo/data
    """
    require("torch", "train", "edgevid plan")
    require("onnx", "export", "edgevid plan")
    from edgevid.plan.run import plan as run_plan
    from edgevid.plan.search import Constraints
    from edgevid.plan.search import budget_ms as budget_of

    constraints = Constraints(budget_of(budget_ms, fps, every), max_drop, memory_mb, streams)
    given = {"precisions": precisions or None, "backends": backends or None,
             "threads": _ints(threads), "levels": _ints(levels),
             "recover_epochs": recover_epochs, "rounds": rounds,
             "sources": sources or None}  # fmt: skip
    if given["threads"] is not None and not all(t >= 1 for t in given["threads"]):
        raise DataError("--threads: thread counts are 1 or more")
    kw = {k: v for k, v in given.items() if v is not None}
    kw.update(
        checkpoint=checkpoint,
        data=data,
        constraints=constraints,
        out=out,
        split=split,
        every=every,
        progress=not quiet,
    )
    cfg = PlanConfig.quick(**kw) if quick else PlanConfig(**kw)
    click.echo(
        f"budget: p95 <= {constraints.budget_ms:.1f} ms per inference "
        f"(batch {streams}); floor: <= {max_drop:g} pts below the unpruned FP32 model",
        err=True,
    )
    try:
        result = run_plan(cfg, log=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        click.echo(
            f"edgevid: plan interrupted; run the same command again to resume "
            f"(measurements kept in {out / 'work'})",
            err=True,
        )
        raise
    click.echo(result.files["table"].read_text(encoding="utf-8"))
    for name, path in result.files.items():
        click.echo(f"{name}: {path}")
    if result.model is not None:
        click.echo(f"model: {result.model}")
    if result.selection.pick is None:
        if result.command:
            click.echo(f"nearest miss, to try anyway: {shlex.join(result.command)}")
        raise NoFeasiblePlan(result.selection.message)
    click.echo(result.selection.message)
    click.echo(shlex.join(result.command or []))


@click.command("plan-measure", hidden=True)
@click.argument("model", type=click.Path())
@click.argument("backend", type=click.Choice(list(BACKENDS)))
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--streams", type=click.IntRange(min=1), default=1)
@click.option("--rounds", type=click.IntRange(min=1), default=10)
@click.option("--manifest", type=click.Path(), default=None)
@click.option("--split", default="test")
def plan_measure(model: str, backend: str, **options) -> None:
    """Measure MODEL on BACKEND in this process (one plan candidate); print one JSON line."""
    from edgevid.plan.measure import measure

    click.echo(json.dumps(measure(model, backend, **options)))


COMMANDS = [plan, plan_measure]
