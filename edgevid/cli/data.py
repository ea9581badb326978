"""``edgevid data``: make, split and inspect folder-per-class video datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgevid.errors import DataError


@click.group("data")
def data() -> None:
    """Make, split and inspect datasets (ROOT/<ClassName>/*.mp4)."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--classes", default=5, show_default=True, help="Number of motion classes (2-8).")
@click.option("--clips-per-class", default=20, show_default=True, help="Clips per class.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option("--size", default="80x64", show_default=True, help="Frame size WxH.")
@click.option("--fps", default=15.0, show_default=True, help="Frame rate of the files.")
@click.option(
    "--clips-per-group",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Clips sharing one scene, like a UCF101 group.",
)
def synth(out: Path, classes: int, clips_per_class: int, seed: int, size: str, fps: float,
          clips_per_group: int) -> None:  # fmt: skip
    """Write a synthetic action dataset to OUT whose classes differ only by motion.

    \b
    Classes: MoveLeft, MoveRight, MoveUp, MoveDown, Grow, Shrink, TurnCW, TurnCCW
    (the first --classes of them). One frame cannot tell them apart; the order of
    frames can. Files are real .mp4 clips named like UCF101 (v_<Class>_gGG_cCC.mp4).
    Example: edgevid data synth data/synth --clips-per-class 40
    """
    from edgevid.train.synth import SynthConfig, make_synthetic_dataset

    w, h = _parse_size(size)
    cfg = SynthConfig(width=w, height=h, fps=fps, clips_per_group=clips_per_group)
    with click.progressbar(length=classes * clips_per_class, label="writing clips") as bar:
        paths = make_synthetic_dataset(
            out,
            classes=classes,
            clips_per_class=clips_per_class,
            seed=seed,
            config=cfg,
            progress=bar.update,
        )
    click.echo(f"wrote {len(paths)} clips in {classes} classes to {out}")


@data.command("split")
@click.argument("root", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Manifest path [default: ROOT/manifest.json].",
)
@click.option("--seed", default=0, show_default=True, help="Random seed of the split.")
@click.option("--ratios", default="0.8,0.1,0.1", show_default=True, help="train,val,test.")
def split(root: Path, out: Path | None, seed: int, ratios: str) -> None:
    """Split ROOT into train/val/test and write the JSON manifest every stage reads.

    UCF101-named clips (v_<Class>_gGG_cCC) keep whole groups on one side.
    """
    from edgevid.train.folders import split_dataset

    m = split_dataset(root, ratios=_parse_ratios(ratios), seed=seed)
    path = m.save(out or root / "manifest.json")
    sizes = ", ".join(f"{k} {len(v)}" for k, v in m.splits.items())
    click.echo(f"{path}: {len(m.classes)} classes, {sizes} (grouping: {m.grouping})")
    if m.extra.get("unreadable"):
        click.echo(f"skipped {len(m.extra['unreadable'])} unreadable files", err=True)


@data.command("inspect")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(root: Path, as_json: bool) -> None:
    """Counts per class and split, durations and unreadable files of ROOT.

    ROOT is a dataset folder (split on the fly, nothing written) or a manifest.
    """
    from edgevid.train.folders import Manifest, inspect_dataset

    manifest = Manifest.load(root) if root.is_file() else None
    report = inspect_dataset(root, manifest)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['root']}  (grouping: {report['grouping']})")
    click.echo(f"{'class':<24}{'train':>7}{'val':>7}{'test':>7}")
    for c, n in report["counts"].items():
        click.echo(f"{c:<24}{n['train']:>7}{n['val']:>7}{n['test']:>7}")
    t = report["totals"]
    click.echo(f"{'total':<24}{t['train']:>7}{t['val']:>7}{t['test']:>7}")
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


def _parse_ratios(ratios: str) -> tuple[float, float, float]:
    try:
        r = tuple(float(v) for v in ratios.split(","))
    except ValueError:
        raise DataError(
            f"--ratios must be three numbers like 0.8,0.1,0.1, got {ratios!r}"
        ) from None
    if len(r) != 3:
        raise DataError(f"--ratios must be three numbers like 0.8,0.1,0.1, got {ratios!r}")
    return r  # type: ignore[return-value]


COMMANDS = [data]
