"""``edgevid bench-model``: one model of ``edgevid bench``, in the child process it starts.

Hidden: ``edgevid bench`` runs it once per model so each has its own peak RSS; it prints
the measurements as one JSON line.
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


COMMANDS = [bench_model]
