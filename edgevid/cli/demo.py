"""``edgevid demo``: every stage end to end, offline, on a CPU."""

from __future__ import annotations

from pathlib import Path

import click

from edgevid.cli._options import log, quiet_option
from edgevid.errors import require


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("edgevid-demo"),
    show_default=True,
    help="Folder for the dataset, runs, exports, videos and tables (new or empty).",
)
@click.option("--data", type=click.Path(path_type=Path),
              help="Your dataset ROOT/<Class>/*.mp4 instead of the synthetic one.")  # fmt: skip
@click.option("--weights", help="Kinetics-400 TimeSformer (local folder or hub id): full size.")
@click.option(
    "--epochs", type=click.IntRange(min=1), help="Training epochs [default: 30 tiny, 50 full size]."
)
@click.option("--clips-per-class", type=click.IntRange(min=2), default=80,
              show_default=True, help="Size of the synthetic dataset.")  # fmt: skip
@click.option(
    "--media",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of real .mp4 clips for the runtime stage [default: ../shared/media].",
)
@quiet_option()
def demo(out: Path, data: Path | None, weights: str | None, epochs: int | None,
         clips_per_class: int, media: Path | None, quiet: bool) -> None:  # fmt: skip
    """Run the whole pipeline end to end and print the results table.

    \b
    1. data      a synthetic motion dataset (or --data), split 80/10/10
    2. train     a TimeSformer and the scratch baseline
    3. prune     importance pruning to 4 layers + distillation from the full model
    4. export    FP32, FP16 and INT8 ONNX graphs, each verified against PyTorch
    5. evaluate  test accuracy and CPU latency of every graph
    6. runtime   the real-time loop on a video, annotated output + JSON lines
    With no options this takes a few minutes on a laptop CPU, offline (tiny models).
    With --weights DIR --data ROOT the same stages run at full size, for real.

    \b
    Examples:
      edgevid demo
      edgevid demo --weights ~/models/timesformer-k400 --data ~/data/ucf5 --out ucf5-demo
    """
    require("torch", "train", "edgevid demo")
    require("onnx", "export", "edgevid demo")
    from edgevid.demo import DemoConfig, run_demo
    from edgevid.progress import is_quiet

    quiet = quiet or is_quiet()
    cfg = DemoConfig(out=out, data=data, weights=weights, epochs=epochs,
                     clips_per_class=clips_per_class, media=media, progress=not quiet)  # fmt: skip
    result = run_demo(cfg, log=log.info)
    click.echo(f"\nedgevid demo: results ({sum(result.seconds.values()):.0f} s)\n")
    click.echo((out / "results.md").read_text())
    for name, path in result.artefacts.items():
        click.echo(f"  {name:<28} {path}")


COMMANDS = [demo]
