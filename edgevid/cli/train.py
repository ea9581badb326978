"""``edgevid train``, ``edgevid prune``, ``edgevid eval``: thin wrappers over edgevid.train."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgevid.cli._options import device_option, emit_json, json_option, quiet_option
from edgevid.errors import DataError, require

PATH = click.Path(path_type=Path)


class _Unfreeze(click.ParamType):
    """--unfreeze: N >= 1 blocks, or -1 for every parameter (shown in --help)."""

    name = "N>=1|-1"

    def convert(self, value, param, ctx):
        try:
            n = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        if n == 0 or n < -1:
            self.fail(f"{n} is not >= 1 (blocks) or -1 (all)", param, ctx)
        return n


UNFREEZE = _Unfreeze()


def _need_torch(what: str) -> None:
    require("torch", "train", what)
    require("transformers", "train", what)


@click.command("train")
@click.option("--variant", default="timesformer", show_default=True,
              help="Model variant (edgevid variants --all).")  # fmt: skip
@click.option("--data", type=PATH, help="Dataset folder ROOT/<Class>/*.mp4, or a manifest.json.")
@click.option("--weights",
              help="Hub id or folder of starting weights; 'random' for none "
              "[default: Kinetics-400 for TimeSformer variants].")  # fmt: skip
@click.option(
    "--zero-shot", is_flag=True, help="Start the new head from the matching Kinetics-400 classes."
)
@click.option("--epochs", type=click.IntRange(min=1),
              help="Epochs [default: 50 fine-tuning, 80 from scratch].")  # fmt: skip
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate [default: 1e-4 / 1e-3 from scratch].")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=8,
              show_default=True, help="Clips per step (per GPU).")  # fmt: skip
@click.option(
    "--unfreeze",
    type=UNFREEZE,
    help="Train the last N encoder blocks + head; -1: all [default: 1 / -1 scratch].",
)
@click.option("--no-augment", is_flag=True, help="Uniform sampling, center crop (enables caching).")
@click.option(
    "--hflip",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Horizontal flip probability (keep 0 if direction is part of the label).",
)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
              default=0.1, show_default=True, help="Cross-entropy label smoothing.")  # fmt: skip
@click.option("--shuffle-frames", is_flag=True,
              help="Control experiment: shuffle frame order (train and test).")  # fmt: skip
@click.option("--no-cache", is_flag=True, help="Never cache the frozen backbone's outputs.")
@click.option("--workers", "num_workers", type=click.IntRange(min=0), default=0,
              show_default=True, help="Decoding worker processes.")  # fmt: skip
@click.option("--save-every", type=click.IntRange(min=0), default=0,
              show_default=True, help="Also save last/ every N steps (0: each epoch).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed.")
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="CPU threads, fixed for the run (0: torch's default). A seeded run gives the same "
    "numbers with the same count, however busy the machine.",
)
@click.option("--out", type=PATH, help="Run folder to create (RUN_DIR).")
@click.option("--resume", type=PATH, help="Continue the run in this RUN_DIR where it stopped.")
@quiet_option()
def train(data, out, resume, quiet, no_augment, hflip, no_cache, **config) -> None:
    """Fine-tune a variant on a folder-per-class dataset (or train the scratch baseline).

    \b
    Writes RUN_DIR/: best/ last/ (checkpoints), history.json, curves.png,
    confusion_matrix.png + .json (test split), config.json, manifest.json.
    \b
    Examples:
      edgevid train --variant timesformer --data data/ucf5 --weights DIR --out runs/tsf
      edgevid train --variant scratch --data data/ucf5 --out runs/scratch
      edgevid train --variant tiny-timesformer --data data/synth --epochs 30 --lr 1e-3 --out runs/t
      edgevid train --resume runs/tsf            # after a crash or kill
    Several GPUs (data parallel, same code):
      accelerate launch --num_processes 4 -m edgevid train --variant timesformer ...
    """
    _need_torch("training")
    from edgevid.core.manifest import load_or_split
    from edgevid.train.build import resolve_weights
    from edgevid.train.config import AugmentConfig, recipe
    from edgevid.train.trainer import Trainer
    from edgevid.train.trainer import train as run

    if resume is not None:
        result = Trainer.resume(resume, progress=not quiet).fit()
    else:
        if data is None or out is None:
            raise DataError(
                "edgevid train needs --data ROOT and --out RUN_DIR (or --resume RUN_DIR)"
            )
        manifest = load_or_split(data)
        # the other options are TrainConfig fields by name (--workers: num_workers)
        pretrained = resolve_weights(config["variant"], config["weights"]) is not None
        augment = AugmentConfig(enabled=not no_augment, hflip=hflip)
        cfg = recipe(pretrained=pretrained, augment=augment, cache_features=not no_cache, **config)
        result = run(cfg, manifest, out, progress=not quiet)
    if not result.is_main:  # one report per data-parallel run, from process 0
        return
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} undecodable clips", err=True)
    if result.partial:
        click.echo(
            f"{len(result.partial)} damaged clips trained on the frames that decoded", err=True
        )
    click.echo(f"best epoch {result.best_epoch}: val top-1 {result.best_val_acc:.3f}")
    if result.test is not None:
        damaged = f", {len(result.test.partial)} damaged" if result.test.partial else ""
        click.echo(f"test top-1 {result.test.top1:.3f} ({result.test.num_clips} clips{damaged})")
    click.echo(f"run folder: {result.run_dir}  (model: {result.run_dir / 'best'})")


@click.command("prune")
@click.option("--checkpoint", type=PATH, required=True, help="Trained checkpoint (RUN_DIR/best).")
@click.option("--variant", help="prune2 | prune4 | prune6 | prune8: drop that many layers.")
@click.option(
    "--keep", type=click.IntRange(min=1), help="Encoder layers to keep (instead of --variant)."
)
@click.option("--strategy", type=click.Choice(["importance", "last"]),
              default="importance", show_default=True, help="Which layers go.")  # fmt: skip
@click.option(
    "--data", type=PATH, help="Dataset or manifest [default: the manifest of the checkpoint's run]."
)
@click.option("--recover-epochs", type=click.IntRange(min=0), default=3,
              show_default=True,
              help="Recovery fine-tuning epochs with distillation (0: none).")  # fmt: skip
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4,
              show_default=True, help="Recovery LR.")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Clips per recovery step.")  # fmt: skip
@click.option("--kd-alpha", type=click.FloatRange(0, 1), default=0.5,
              show_default=True, help="Weight of the KL term.")  # fmt: skip
@click.option("--kd-temperature", type=click.FloatRange(min=0, min_open=True),
              default=2.0, show_default=True,
              help="Softmax temperature of teacher and student.")  # fmt: skip
@click.option("--no-augment", is_flag=True, help="Recovery without augmentation.")
@click.option("--sweep", is_flag=True, help="Every depth: table (md, json) and trade-off plot.")
@click.option("--out", type=PATH, required=True, help="Output folder.")
@quiet_option()
def prune(checkpoint, variant, keep, strategy, data, recover_epochs, no_augment, sweep, out, quiet,
          **train) -> None:  # fmt: skip
    """Drop encoder layers of a trained TimeSformer, then recover with distillation.

    \b
    OUT/best/ is a Hugging Face checkpoint (num_hidden_layers updated) whose edgevid.json
    lists the kept layers; OUT/prune.json records the choice.
    \b
    Examples:
      edgevid prune --checkpoint runs/tsf/best --variant prune4 --out runs/prune4
      edgevid prune --checkpoint runs/tsf/best --keep 6 --strategy last --out runs/last6
      edgevid prune --checkpoint runs/tsf/best --sweep --out runs/sweep
    """
    _need_torch("pruning")
    from edgevid.core.manifest import load_or_split, run_manifest
    from edgevid.train.checkpoint import load_checkpoint
    from edgevid.train.prune import prune as run
    from edgevid.train.prune import prune_sweep, recovery_config, variant_depth

    if not sweep and (variant is None) == (keep is None):
        raise DataError("edgevid prune needs exactly one of --variant pruneK, --keep K, --sweep")
    model, meta = load_checkpoint(checkpoint)
    data = data or run_manifest(checkpoint)
    if data is None:
        raise DataError(f"{checkpoint}: no run manifest beside it; pass --data ROOT")
    manifest = load_or_split(data)
    # train: lr, batch_size, kd_alpha, kd_temperature (TrainConfig fields by name)
    recover = recovery_config(meta.variant, recover_epochs, augment=not no_augment, **train)
    if sweep:
        rows = prune_sweep(
            model, meta, manifest, out, strategy=strategy, recover=recover, progress=not quiet
        )
        for r in rows:
            click.echo(
                f"{r['name']:<16}{r['layers']:>3} layers  test top-1 {r['test_acc']:.3f}"
                f"  {r['latency_ms']:.1f} ms/clip"
            )
        click.echo(f"table: {out / 'sweep.md'}, plot: {out / 'tradeoff.png'}")
        return
    if keep is None:
        keep = variant_depth(variant)
    result = run(
        model,
        meta,
        manifest,
        out,
        keep=keep,
        strategy=strategy,
        recover=recover,
        progress=not quiet,
    )
    click.echo(f"kept layers {result.kept_layers} ({strategy})")
    if result.test_acc is not None and recover is not None:
        click.echo(
            f"test top-1 {result.pruned_test_acc:.3f} pruned -> {result.test_acc:.3f} recovered"
        )
    elif result.test_acc is not None:
        click.echo(f"test top-1 {result.test_acc:.3f}")
    click.echo(f"model: {out / 'best'}")


@click.command("eval")
@click.option(
    "--model",
    "-m",
    "model_path",
    type=PATH,
    required=True,
    help="Checkpoint folder (RUN_DIR/best) or a model file the runtime runs (.onnx, .engine).",
)
@click.option("--data", type=PATH, required=True,
              help="Dataset/manifest (uses --split), or any folder <ClassName>/*.mp4.")  # fmt: skip
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test",
              show_default=True, help="Manifest split.")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Clips per inference batch.")  # fmt: skip
@device_option(
    "For a checkpoint: auto takes the GPU if torch has one, else the CPU; for a model file, "
    "the runtime's backend choice (as in edgevid run)."
)
@click.option("--out", type=PATH, help="Write report.json and confusion_matrix.png here.")
@json_option("The report")
def eval_(model_path, data, split, batch_size, device, out, json_path) -> None:
    """Top-1 (top-5 with more than 5 classes), per-class P/R/F1, confusion matrix.

    \b
    Examples:
      edgevid eval --model runs/tsf/best --data data/ucf5 --split test --out runs/tsf/eval
      edgevid eval -m prune4.onnx --data clips/real_world --json report.json
    """
    import contextlib

    from edgevid.progress import is_quiet
    from edgevid.train.evaluate import score_model

    with contextlib.ExitStack() as stack:
        bars: list = []  # opened on the first batch: an error before it stays one line

        def progress(done: int, total: int) -> None:
            if not bars:
                bar = click.progressbar(length=total, label="evaluating", file=sys.stderr,
                                        hidden=is_quiet())  # fmt: skip
                bars.append(stack.enter_context(bar))
            bars[0].update(done - bars[0].pos)

        report = score_model(model_path, data, split, batch_size=batch_size, device=device,
                             progress=progress)  # fmt: skip
    for s in report.skipped:
        click.echo(f"skipped undecodable clip {s}", err=True)
    for s in report.partial:
        click.echo(f"edgevid: warning: {s}; evaluated on what decoded", err=True)
    if out is not None:
        from edgevid.train.plots import plot_confusion

        report.save(out / "report.json")
        plot_confusion(
            report.confusion,
            report.labels,
            out / "confusion_matrix.png",
            title=f"{model_path.name}: top-1 {report.top1:.3f}",
        )
    if json_path is None or not emit_json(json_path, report.to_dict()):
        click.echo(report.table())


eval_.name = "eval"
COMMANDS = [train, prune, eval_]
