"""Datasets are confined to the folder the user pointed at.

A split dataset copied elsewhere (the original deleted) trains and evaluates from the copy;
a manifest's stored root is never where clips are read from when a dataset folder is given;
a clip path that leaves the folder (``..``, absolute, a symlink pointing out) is refused with
one line; a run where no clip decodes is an error, never a published ``best/``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from edgevid.core.manifest import Manifest, split_dataset
from edgevid.errors import DataError
from tests.conftest import assert_one_line, invoke, needs_torch

TRAIN = ["--variant", "tiny-scratch", "--epochs", "1", "--weights", "random", "--quiet"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture()
def split_copy(synth_root, tmp_path) -> Path:
    """synth_root split in a first place, copied to another, the first one deleted."""
    first = tmp_path / "first"
    shutil.copytree(synth_root, first)
    code, out = invoke(["data", "split", first])
    assert code == 0, out
    copy = tmp_path / "moved" / "ds"
    shutil.copytree(first, copy)
    shutil.rmtree(first)
    assert json.loads((copy / "manifest.json").read_text())["root"] == str(first)
    return copy


def edit_manifest(folder: Path, edit) -> None:
    d = json.loads((folder / "manifest.json").read_text())
    edit(d)
    (folder / "manifest.json").write_text(json.dumps(d))


# --- the dataset folder given is the root -----------------------------------------------------
@needs_torch
@pytest.mark.slow
def test_copied_dataset_trains_from_the_copy(split_copy, tmp_path):
    run = tmp_path / "run"
    code, out = invoke(["train", *TRAIN, "--data", split_copy, "--out", run])
    assert code == 0, out
    meta = json.loads((run / "best" / "edgevid.json").read_text())
    assert math.isfinite(meta["extra"]["val_acc"])  # validated on clips of the copy
    assert json.loads((run / "manifest.json").read_text())["root"] == str(split_copy.resolve())


def test_copied_dataset_evaluates_from_the_copy(split_copy, tiny_onnx, tmp_path):
    code, out = invoke(["eval", "--model", tiny_onnx, "--data", split_copy, "--out",
                        tmp_path / "ev", "--json"])  # fmt: skip
    assert code == 0, out
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    n_test = len(json.loads((split_copy / "manifest.json").read_text())["splits"]["test"])
    assert report["num_clips"] == n_test and report["skipped"] == []


def test_a_stored_root_elsewhere_is_not_read(split_copy, synth_root, tmp_path):
    """The manifest names another dataset (here the original, still there): with --data
    the folder, every clip comes from the folder."""
    edit_manifest(split_copy, lambda d: d.update(root=str(synth_root)))
    m = Manifest.load(split_copy / "manifest.json", root=split_copy)
    assert all(p.is_relative_to(split_copy) for s in ("train", "val", "test") for p in m.paths(s))
    from edgevid.core.manifest import load_or_split

    assert load_or_split(split_copy).root == str(split_copy.resolve())


def test_a_manifest_file_inside_its_dataset_reads_that_dataset(split_copy):
    m = Manifest.load(split_copy / "manifest.json")  # the file, not the folder
    assert m.root == str(split_copy.resolve())


def test_a_manifest_file_beside_no_dataset_keeps_its_root(synth_root, tmp_path):
    """A run's copy of its split (RUN/manifest.json) is not inside the dataset."""
    split_dataset(synth_root).save(tmp_path / "m.json")
    assert Manifest.load(tmp_path / "m.json").root == str(synth_root.resolve())


def test_dataset_folder_behind_a_symlink_works(split_copy, tiny_onnx, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(split_copy)
    code, out = invoke(["eval", "--model", tiny_onnx, "--data", link])
    assert code == 0, out


def test_a_symlink_inside_the_dataset_to_a_clip_inside_is_fine(split_copy):
    first = sorted((split_copy / "Grow").glob("*.mp4"))[0]
    alias = split_copy / "Grow" / "alias.mp4"
    alias.symlink_to(first)
    edit_manifest(split_copy, lambda d: d["splits"]["test"].append(
        {"path": "Grow/alias.mp4", "label": d["classes"].index("Grow"), "group": "x"}))  # fmt: skip
    assert Manifest.load(split_copy / "manifest.json").paths("test")[-1] == alias


# --- leaving the folder: refused, one line --------------------------------------------------
def escape(kind: str, folder: Path, outside: Path) -> str:
    """Make a clip path of ``kind`` that leads from ``folder`` to ``outside``."""
    if kind == "dotdot":
        return f"../{outside.name}"
    if kind == "absolute":
        return str(outside)
    link = folder / "Grow" / "escape.mp4"
    link.symlink_to(outside)
    return "Grow/escape.mp4"


@pytest.fixture()
def outside(split_copy, synth_root) -> Path:
    clip = split_copy.parent / "outside.mp4"
    shutil.copy(sorted((synth_root / "Grow").glob("*.mp4"))[0], clip)
    return clip


KINDS = ["dotdot", "absolute", "symlink"]


@pytest.mark.parametrize("kind", KINDS)
def test_eval_refuses_a_clip_outside_the_dataset(kind, split_copy, outside, tiny_onnx, tmp_path):
    rel = escape(kind, split_copy, outside)
    edit_manifest(split_copy, lambda d: d["splits"]["test"].append(
        {"path": rel, "label": 0, "group": "x"}))  # fmt: skip
    before = snapshot(split_copy.parent)
    code, out = invoke(["eval", "--model", tiny_onnx, "--data", split_copy, "--out",
                        tmp_path / "ev"])  # fmt: skip
    assert_one_line(code, out, rel if kind != "absolute" else "inside")
    assert not (tmp_path / "ev").exists() and snapshot(split_copy.parent) == before


@needs_torch
@pytest.mark.parametrize("kind", KINDS)
def test_train_refuses_a_clip_outside_the_dataset(kind, split_copy, outside, tmp_path):
    rel = escape(kind, split_copy, outside)
    edit_manifest(split_copy, lambda d: d["splits"]["train"].append(
        {"path": rel, "label": 0, "group": "x"}))  # fmt: skip
    code, out = invoke(["train", *TRAIN, "--data", split_copy, "--out", tmp_path / "run"])
    assert_one_line(code, out, "inside" if kind != "symlink" else "outside the dataset folder")
    assert not (tmp_path / "run" / "best").exists()


def test_split_refuses_a_symlink_pointing_out(split_copy, outside):
    (split_copy / "manifest.json").unlink()
    escape("symlink", split_copy, outside)
    code, out = invoke(["data", "split", split_copy])
    assert_one_line(code, out, "Grow/escape.mp4", "outside the dataset folder")
    assert not (split_copy / "manifest.json").exists()


def test_sample_path_is_the_one_rule(tmp_path):
    from edgevid.core.manifest import sample_path

    (tmp_path / "a").mkdir()
    assert sample_path(tmp_path, "a/x.mp4") == tmp_path.resolve() / "a" / "x.mp4"
    for bad in ("../x.mp4", "/etc/passwd", "", "a/../../x.mp4"):
        with pytest.raises(DataError, match="not a path inside the dataset folder"):
            sample_path(tmp_path, bad)


# --- no clip decodes: an error, never best/ ---------------------------------------------------
def spoil(folder: Path, split: str | None = None) -> None:
    """Every clip (of ``split``, or all) replaced by bytes that are not a video."""
    m = json.loads((folder / "manifest.json").read_text())
    splits = [split] if split else list(m["splits"])
    for s in splits:
        for smp in m["splits"][s]:
            (folder / smp["path"]).write_bytes(b"not a video\n" * 64)


@needs_torch
def test_training_where_no_clip_decodes_publishes_nothing(split_copy, tmp_path):
    spoil(split_copy)
    code, out = invoke(["train", *TRAIN, "--data", split_copy, "--out", tmp_path / "run"])
    assert_one_line(code, out, "could be decoded", "train")
    assert not (tmp_path / "run" / "best").exists() and not (tmp_path / "run" / "last").exists()


@needs_torch
def test_training_where_no_validation_clip_decodes_publishes_nothing(split_copy, tmp_path):
    spoil(split_copy, "val")
    code, out = invoke(["train", *TRAIN, "--data", split_copy, "--out", tmp_path / "run"])
    assert_one_line(code, out, "could be decoded", "val split")
    assert not (tmp_path / "run" / "best").exists()


def test_eval_where_no_clip_decodes_is_one_line(split_copy, tiny_onnx, tmp_path):
    spoil(split_copy, "test")
    code, out = invoke(["eval", "--model", tiny_onnx, "--data", split_copy, "--out",
                        tmp_path / "ev"])  # fmt: skip
    assert_one_line(code, out, "no clip could be decoded")
    assert not (tmp_path / "ev").exists()
