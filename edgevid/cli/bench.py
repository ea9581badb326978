"""Hidden commands that measure in a child process, so each measurement has its own memory.

``edgevid bench-model``: one model of ``edgevid bench`` (its own peak RSS), as one JSON line.
``edgevid time-backend``: one CPU candidate of ``--device auto``, its ms per clip.
"""

from __future__ import annotations

import json

import click

from edgevid.runtime.backends import DEVICES


@click.command("bench-model", hidden=True)
@click.argument("model", type=click.Path())
@click.argument("video", type=click.Path())
@click.option("--every", type=click.IntRange(min=1), default=8)
@click.option("--max-frames", type=click.IntRange(min=1), default=None)
@click.option("--target-fps", type=click.FloatRange(min=0, min_open=True), default=30.0)
@click.option("--device", type=click.Choice(DEVICES), default="auto")
@click.option("--threads", type=click.IntRange(min=1), default=None)
def bench_model(model: str, video: str, **options) -> None:
    """Benchmark MODEL on VIDEO in this process; print the result as one JSON line."""
    from edgevid.runtime.bench import bench_model as run_bench

    click.echo(json.dumps(run_bench(model, video, **options)))


@click.command("time-backend", hidden=True)
@click.argument("model", type=click.Path())
@click.argument("candidate")
@click.option("--threads", type=click.IntRange(min=1), default=None)
def time_backend(model: str, candidate: str, threads: int | None) -> None:
    """Time MODEL on one --device auto CANDIDATE in this process; print its ms per clip."""
    from edgevid.runtime.backends.choice import CANDIDATES, time_candidate

    if candidate not in CANDIDATES:
        raise click.BadParameter(f"choose from {', '.join(CANDIDATES)}", param_hint="CANDIDATE")
    click.echo(f"{time_candidate(model, candidate, threads):.3f}")


COMMANDS = [bench_model, time_backend]
