"""Folder-per-class video datasets: scan, split into train/val/test, and the manifest.

    root/<ClassName>/<clip>.mp4|avi|mkv|mov|webm

UCF101 clips are named ``v_<Class>_g<GG>_c<CC>``: every clip of one group comes from one
long video (same actor, same scene). A random split puts sibling clips on both sides and
inflates validation accuracy, so when the names follow that pattern whole groups go to one
split. Otherwise the split is a seeded stratified split of clips. Either way the result is
written to a JSON manifest that every later stage reads, so all stages see the same clips.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid._atomic import write_json
from edgevid.core.meta import MAX_CLIP_SECONDS, MAX_FPS
from edgevid.core.schema import at_least, between, non_empty, read_json, unique
from edgevid.core.video import is_video_file, probe_video
from edgevid.errors import DataError, VideoError

SPLITS = ("train", "val", "test")
MANIFEST_VERSION = 1
UCF_PATTERN = re.compile(r"^v_(?P<cls>.+?)_g(?P<group>\d+)_c(?P<clip>\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root
    label: int  # index into Manifest.classes
    group: str  # clips of one group never straddle splits

    # The file schema (edgevid.core.schema): a path inside the dataset root, a label index.
    CONSTRAINTS = {"path": lambda p: _inside_root(p), "label": at_least(0)}


@dataclass
class Manifest:
    root: str  # dataset root the sample paths are relative to
    classes: list[str]  # class names, sorted; index = label
    splits: dict[str, list[Sample]]  # "train" | "val" | "test" -> samples
    seed: int = 0  # RNG seed of the split
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train/val/test fractions
    grouping: str = "none"  # "ucf101" when group-aware, else "none"
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. clip statistics

    # The file schema (edgevid.core.schema): what a manifest.json must hold.
    CONSTRAINTS = {
        "classes": (non_empty, unique),
        "splits": lambda d: None if set(d) <= set(SPLITS) else f"keys must be among {SPLITS}",
        "ratios": between(0, 1),
        "seed": at_least(0),
        "extra": lambda d: _clip_statistics(d),
    }
    REQUIRED = ("root", "classes", "splits")

    def paths(self, split: str) -> list[Path]:
        """The clips of ``split``; a clip that leaves the root (a symlink out) is refused."""
        return [sample_path(self.root, s.path) for s in self.splits[split]]

    def labels(self, split: str) -> list[int]:
        return [s.label for s in self.splits[split]]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # the samples as dicts too
        splits = d.pop("splits")  # last in the file: the short fields stay readable on top
        return {"version": MANIFEST_VERSION, **d, "ratios": list(self.ratios), "splits": splits}

    @classmethod
    def from_dict(cls, d: dict[str, Any], root: str | None = None) -> Manifest:
        try:
            return cls(
                root=root or d["root"],
                classes=list(d["classes"]),
                splits={k: [Sample(**s) for s in v] for k, v in d["splits"].items()},
                seed=int(d.get("seed", 0)),
                ratios=tuple(d.get("ratios", (0.8, 0.1, 0.1))),
                grouping=d.get("grouping", "none"),
                extra=d.get("extra", {}),
            )
        except (KeyError, TypeError) as e:
            raise DataError(f"malformed manifest: missing or bad field {e}") from e

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, root: str | os.PathLike | None = None) -> Manifest:
        """The manifest at ``path``, its clips under ``root``: the dataset folder the user
        gave. Without one: the manifest's own folder when it holds the class folders (a
        manifest inside its dataset, wherever that was copied), else the stored root (a
        relative one from the manifest's folder), as a run's copy of its split has it."""
        path = Path(path)
        d = read_json(cls, path, "manifest", DataError)
        last = len(d["classes"]) - 1
        bad = [
            f"splits.{k}[{i}].label: {smp['label']} is not a class index (0..{last})"
            for k, v in d["splits"].items()
            for i, smp in enumerate(v)
            if smp["label"] >= len(d["classes"])
        ]
        if bad:
            raise DataError(f"{path}: invalid manifest: {'; '.join(bad[:5])}")
        m = cls.from_dict(d)
        if root is None and all((path.parent / c).is_dir() for c in m.classes):
            root = path.parent  # the dataset it sits in, not where it was split
        m.root = str((Path(root) if root is not None else path.parent / m.root).resolve())
        return m


def _clip_statistics(extra: dict[str, Any]) -> str | None:
    """The clip statistics training takes its sampling from must be numbers in range."""
    for key, high in (("mean_duration_s", MAX_CLIP_SECONDS), ("median_fps", MAX_FPS)):
        v = extra.get(key)
        if v is not None and (type(v) not in (int, float) or not 0 < v <= high):
            return f"{key} must be a number in (0, {high:g}], got {v!r}"[:120]
    return None


def _inside_root(path: str) -> str | None:
    """A sample path must stay inside the dataset root (no absolute path, no '..')."""
    p = Path(path)
    if not path or p.is_absolute() or ".." in p.parts:
        return f"must be a path inside the dataset root, got {path!r}"
    return None


def sample_path(root: str | os.PathLike, path: str) -> Path:
    """``root / path``, refused (DataError) unless it stays inside ``root`` once symlinks
    are followed: edgevid reads clips only inside the dataset folder it was given."""
    root = Path(root).resolve()
    full = root / path
    if _inside_root(path) is not None:
        raise DataError(f"{root}: clip {path!r} is not a path inside the dataset folder")
    if not full.resolve().is_relative_to(root):
        raise DataError(
            f"{root}: clip {path!r} is a link to {full.resolve()}, outside the dataset folder "
            "(edgevid reads clips only inside the folder it was given)"
        )
    return full


def scan_folder(root: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """List (classes, [(video path, label)]) of a folder-per-class dataset."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = [
        (sample_path(root, str(p.relative_to(root))), label)
        for label, c in enumerate(classes)
        for p in sorted((root / c).iterdir())
        if p.is_file() and is_video_file(p)
    ]
    if not items:
        raise DataError(
            f"{root}: no videos found (expected {root}/<ClassName>/*.mp4|avi|mkv|mov|webm)"
        )
    return classes, items


def group_key(path: Path, class_name: str) -> tuple[str, bool]:
    """The split group of a clip and whether it came from the UCF101 naming."""
    m = UCF_PATTERN.match(path.stem)
    if m:
        return f"{class_name}/g{int(m['group']):02d}", True
    return f"{class_name}/{path.stem}", False


def _split_groups(
    groups: dict[str, list[Sample]], ratios: tuple[float, float, float], rng: np.random.Generator
) -> dict[str, list[Sample]]:
    """Assign whole groups of one class to splits, filling val and test to their share."""
    keys = sorted(groups)
    rng.shuffle(keys)
    total = sum(len(groups[k]) for k in keys)
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    targets = {"val": ratios[1] * total, "test": ratios[2] * total}
    for split in ("val", "test"):
        if targets[split] <= 0:
            continue
        while len(keys) > 1:  # the last group always stays in train
            size = len(groups[keys[-1]])
            # Take a group while that brings the split closer to its share (the first
            # one always, so a small class still has a clip to validate and test on).
            if out[split] and len(out[split]) + size / 2 > targets[split]:
                break
            out[split].extend(groups[keys.pop()])
    for k in keys:
        out["train"].extend(groups[k])
    return out


def split_dataset(
    root: str | os.PathLike,
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    check: bool = True,
) -> Manifest:
    """Scan ``root`` and split it per class, keeping UCF101 groups whole.

    With ``check`` every clip is probed; unreadable files are left out and listed in
    ``manifest.extra["unreadable"]`` rather than failing the whole dataset.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise DataError(f"split ratios must be three non-negative numbers summing to 1: {ratios}")
    root = Path(root).resolve()
    classes, items = scan_folder(root)
    unreadable: list[str] = []
    durations, fpss = [], []
    per_class: dict[int, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    ucf = 0
    for path, label in items:
        if check:
            try:
                info = probe_video(path)
                durations.append(info.duration)
                fpss.append(info.fps)
            except VideoError:
                unreadable.append(str(path.relative_to(root)))
                continue
        g, is_ucf = group_key(path, classes[label])
        ucf += is_ucf
        per_class[label][g].append(Sample(str(path.relative_to(root)), label, g))
    rng = np.random.default_rng(seed)
    splits: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for label in sorted(per_class):
        for s, samples in _split_groups(per_class[label], ratios, rng).items():
            splits[s].extend(samples)
    extra: dict[str, Any] = {"unreadable": unreadable}
    if durations:
        extra["mean_duration_s"] = float(np.mean(durations))
        extra["median_fps"] = float(np.median(fpss))
    return Manifest(
        root=str(root),
        classes=classes,
        splits=splits,
        seed=seed,
        ratios=tuple(ratios),
        grouping="ucf101" if ucf else "none",
        extra=extra,
    )


def split_warnings(m: Manifest, tolerance: float = 0.05) -> list[str]:
    """What a split got, where it is not what was asked, and why; [] when it is close.

    Groups stay whole and each class gives val and test at least one group, so with few
    groups per class the fractions can be far from the requested ones.
    """
    total = sum(len(v) for v in m.splits.values())
    if total == 0:
        return []
    got = [len(m.splits[s]) / total for s in SPLITS]
    warnings = [
        f"the {s} split is empty (ratio 0): "
        + ("training keeps the last epoch" if s == "val" else "no test accuracy is reported")
        for s, r in zip(SPLITS, m.ratios, strict=True)
        if r == 0 and s != "train"
    ]
    if max(abs(g - r) for g, r in zip(got, m.ratios, strict=True)) > tolerance:
        groups = len({smp.group for v in m.splits.values() for smp in v})
        per_class = groups / max(1, len(m.classes))
        pct = "/".join(f"{100 * v:.0f}" for v in got)
        asked = "/".join(f"{100 * v:.0f}" for v in m.ratios)
        warnings.append(
            f"split is {pct} (train/val/test) for the requested {asked}: {per_class:.1f} "
            f"groups per class ({m.grouping} grouping) are too few to split finer, since a "
            "group stays whole and val and test get at least one group of each class"
        )
    return warnings


def run_manifest(checkpoint: str | os.PathLike) -> Path | None:
    """The split a checkpoint's run used: ``RUN/manifest.json`` beside ``RUN/best``."""
    path = Path(checkpoint).parent / "manifest.json"
    return path if path.is_file() else None


def load_or_split(
    data: str | os.PathLike, *, seed: int = 0, manifest_name: str = "manifest.json"
) -> Manifest:
    """A manifest path; or a dataset folder: its ``manifest.json`` if it has one (written by
    ``edgevid data split``, so every stage sees one split), else a fresh split in memory.

    Nothing is written into the dataset: it may be read-only or shared. A run keeps the
    split it used in its own folder.
    """
    data = Path(data)
    if data.is_file():
        return Manifest.load(data)
    manifest_path = data / manifest_name
    if manifest_path.is_file():
        return Manifest.load(manifest_path, root=data)
    return split_dataset(data, seed=seed)


def inspect_dataset(root: str | os.PathLike, manifest: Manifest | None = None) -> dict[str, Any]:
    """Per-class counts per split, durations and unreadable files, for ``edgevid data inspect``."""
    m = manifest or split_dataset(root)
    counts = {c: {s: 0 for s in SPLITS} for c in m.classes}
    seen: dict[str, set[str]] = defaultdict(set)  # group -> the splits it is in
    for s, samples in m.splits.items():
        for smp in samples:
            counts[m.classes[smp.label]][s] += 1
            seen[smp.group].add(s)
    return {
        "root": m.root,
        "classes": m.classes,
        "counts": counts,
        "totals": {s: len(m.splits[s]) for s in SPLITS},
        "groups": {s: len({smp.group for smp in m.splits[s]}) for s in SPLITS},
        "grouping": m.grouping,
        "leaked_groups": sorted(g for g, where in seen.items() if len(where) > 1),
        "mean_duration_s": m.extra.get("mean_duration_s"),
        "median_fps": m.extra.get("median_fps"),
        "unreadable": m.extra.get("unreadable", []),
        "per_class_total": dict(Counter(m.classes[s.label] for v in m.splits.values() for s in v)),
    }
