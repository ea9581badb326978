"""``edgevid data``: make, split and inspect folder-per-class video datasets."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from edgevid.cli._options import emit_json, json_option
from edgevid.errors import DataError
from edgevid.progress import is_quiet


class _Ratios(click.ParamType):
    """--ratios train,val,test: three non-negative fractions summing to 1, train above 0."""

    name = "TRAIN,VAL,TEST"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            r = tuple(float(v) for v in str(value).split(","))
        except ValueError:
            r = ()
        if len(r) != 3 or not all(math.isfinite(v) for v in r):
            self.fail(f"must be three numbers like 0.8,0.1,0.1, got {value!r}", param, ctx)
        if any(v < 0 for v in r) or abs(sum(r) - 1) > 1e-6:
            self.fail(f"must be non-negative and sum to 1, got {value!r}", param, ctx)
        if r[0] <= 0:
            self.fail(f"the train fraction must be above 0, got {value!r}", param, ctx)
        return r


RATIOS = _Ratios()


@click.group("data")
def data() -> None:
    """Make, split and inspect datasets (ROOT/<ClassName>/*.mp4)."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--classes", type=click.IntRange(2, 8), default=5, show_default=True,
              help="Number of motion classes.")  # fmt: skip
@click.option("--clips-per-class", type=click.IntRange(min=1), default=20, show_default=True,
              help="Clips per class.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed.")  # fmt: skip
@click.option("--size", default="80x64", show_default=True, help="Frame size WxH.")
@click.option("--fps", type=click.FloatRange(min=1, max=240), default=15.0, show_default=True,
              help="Frame rate of the files.")  # fmt: skip
@click.option("--clips-per-group", default=1, show_default=True,
              type=click.IntRange(min=1),
              help="Clips sharing one scene, like a UCF101 group.")  # fmt: skip
@click.option("--cut-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of clips cut out of a longer action (back-to-back clips of one "
              "motion, as in --untrimmed), so they hold a cut: train with 0.5 for a model "
              "that segments untrimmed videos.")  # fmt: skip
@click.option("--untrimmed", is_flag=True,
              help="Instead: one untrimmed video OUT/untrimmed.mp4 of --segments actions "
              "back to back, with its true boundaries in OUT/untrimmed.json.")  # fmt: skip
@click.option("--segments", default=8, show_default=True, type=click.IntRange(min=1),
              help="Actions in the --untrimmed video (3-5 s each).")  # fmt: skip
def synth(out: Path, classes: int, clips_per_class: int, seed: int, size: str, fps: float,
          clips_per_group: int, cut_share: float, untrimmed: bool,
          segments: int) -> None:  # fmt: skip
    """Write a synthetic action dataset to OUT whose classes differ only by motion.

    \b
    Classes: MoveLeft, MoveRight, MoveUp, MoveDown, Grow, Shrink, TurnCW, TurnCCW
    (the first --classes of them). One frame cannot tell them apart; the order of
    frames can. Files are real .mp4 clips named like UCF101 (v_<Class>_gGG_cCC.mp4).
    With --untrimmed: one long video of actions back to back and its ground truth, to
    measure action segments (edgevid run --events).
    \b
    Examples:
      edgevid data synth data/synth --clips-per-class 40
      edgevid data synth data/untrimmed --untrimmed --classes 3 --segments 10
    """
    from edgevid.train.synth import SynthConfig, make_synthetic_dataset, make_untrimmed_video

    w, h = _parse_size(size)
    cfg = SynthConfig(
        width=w, height=h, fps=fps, clips_per_group=clips_per_group, cut_share=cut_share
    )
    if untrimmed:
        truth = make_untrimmed_video(
            out / "untrimmed.mp4", classes=classes, segments=segments, seed=seed, config=cfg
        )
        click.echo(
            f"wrote {out / 'untrimmed.mp4'} ({truth[-1].end:.1f} s, {len(truth)} actions) "
            f"and {out / 'untrimmed.json'}"
        )
        return
    with click.progressbar(length=classes * clips_per_class, label="writing clips",
                           file=sys.stderr, hidden=is_quiet()) as bar:  # fmt: skip
        paths = make_synthetic_dataset(out, classes=classes, clips_per_class=clips_per_class,
                                       seed=seed, config=cfg, progress=bar.update)  # fmt: skip
    click.echo(f"wrote {len(paths)} clips in {classes} classes to {out}")


@data.command("split")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Manifest path [default: ROOT/manifest.json].")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed of the split.")  # fmt: skip
@click.option("--ratios", type=RATIOS, default="0.8,0.1,0.1", show_default=True,
              help="train,val,test fractions summing to 1 (train > 0).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing manifest.")
def split(
    root: Path, out: Path | None, seed: int, ratios: tuple[float, float, float], force: bool
) -> None:
    """Split ROOT into train/val/test and write the JSON manifest every stage reads.

    UCF101-named clips (v_<Class>_gGG_cCC) keep whole groups on one side. A split that
    cannot follow the ratios (too few groups per class) says what it got and why.
    """
    from edgevid.core.manifest import split_dataset, split_warnings

    target = out or root / "manifest.json"
    if target.exists() and not force:
        raise DataError(
            f"{target}: a manifest exists (runs may rely on its split); --force to replace it"
        )
    m = split_dataset(root, ratios=ratios, seed=seed)
    for warning in split_warnings(m):
        click.echo(f"edgevid: warning: {warning}", err=True)
    path = m.save(target)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in m.splits.items())
    click.echo(f"{path}: {len(m.classes)} classes, {sizes} (grouping: {m.grouping})")
    if m.extra.get("unreadable"):
        click.echo(f"skipped {len(m.extra['unreadable'])} unreadable files", err=True)


@data.command("inspect")
@click.argument("root", type=click.Path(path_type=Path))
@json_option("The report")
def inspect(root: Path, json_path: str | None) -> None:
    """Counts per class and split, durations and unreadable files of ROOT.

    ROOT is a dataset folder (split on the fly, nothing written) or a manifest.
    """
    from edgevid.core.manifest import Manifest, inspect_dataset

    manifest = Manifest.load(root) if root.is_file() else None
    report = inspect_dataset(root, manifest)
    if json_path is not None and emit_json(json_path, report):
        return
    click.echo(f"{report['root']}  (grouping: {report['grouping']})")
    click.echo(f"{'class':<24}{'train':>7}{'val':>7}{'test':>7}")
    for c, n in [*report["counts"].items(), ("total", report["totals"])]:
        click.echo(f"{c:<24}{n['train']:>7}{n['val']:>7}{n['test']:>7}")
    if report["mean_duration_s"] is not None:
        click.echo(
            f"mean duration {report['mean_duration_s']:.2f} s, "
            f"median fps {report['median_fps']:.2f}"
        )
    if report["leaked_groups"]:
        click.echo(f"WARNING: {len(report['leaked_groups'])} groups straddle splits", err=True)
    bad = report["unreadable"]
    click.echo(f"unreadable files: {len(bad)}")
    for p in bad:
        click.echo(f"  {p}")


def _parse_size(size: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise DataError(f"--size must look like 80x64, got {size!r}") from None
    if w < 16 or h < 16:
        raise DataError(f"--size must be at least 16x16, got {size!r}")
    return w, h


COMMANDS = [data]
