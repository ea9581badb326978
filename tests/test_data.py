"""Folder datasets, the group-aware split and the manifest."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from edgevid.core.manifest import Manifest, inspect_dataset, load_or_split, split_dataset
from edgevid.errors import DataError
from edgevid.train.synth import MOTIONS


def _groups(m: Manifest, split: str) -> set[str]:
    return {s.group for s in m.splits[split]}


def test_split_is_deterministic(synth_root):
    a, b = split_dataset(synth_root, seed=3), split_dataset(synth_root, seed=3)
    assert a.to_dict() == b.to_dict()
    c = split_dataset(synth_root, seed=4)
    assert c.splits["test"] != a.splits["test"]


def test_ucf_groups_never_straddle_splits(synth_root):
    m = split_dataset(synth_root, seed=0)
    assert m.grouping == "ucf101"
    train, val, test = (_groups(m, s) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert inspect_dataset(synth_root, m)["leaked_groups"] == []


def test_split_is_stratified_and_near_80_10_10(synth_root):
    m = split_dataset(synth_root, seed=0)
    per_split = {s: Counter(m.labels(s)) for s in m.splits}
    for label in range(5):  # every class is present in every split
        assert all(per_split[s][label] >= 1 for s in m.splits)
    total = sum(len(v) for v in m.splits.values())
    assert total == 50
    assert 0.6 <= len(m.splits["train"]) / total <= 0.85


def test_plain_names_get_a_stratified_clip_split(tmp_path, synth_root):
    for cls in MOTIONS[:3]:
        (tmp_path / cls).mkdir()
        for i, src in enumerate(sorted((synth_root / cls).glob("*.mp4"))):
            shutil.copy(src, tmp_path / cls / f"clip{i}.mp4")
    m = split_dataset(tmp_path, seed=0)
    assert m.grouping == "none"
    assert {s: len(v) for s, v in m.splits.items()} == {"train": 24, "val": 3, "test": 3}


def test_unreadable_files_are_skipped_and_counted(tmp_path, synth_root):
    shutil.copytree(synth_root, tmp_path / "d")
    bad = tmp_path / "d" / "Grow" / "v_Grow_g09_c01.mp4"
    bad.write_bytes(b"not a video")
    m = split_dataset(tmp_path / "d")
    assert m.extra["unreadable"] == ["Grow/v_Grow_g09_c01.mp4"]
    assert sum(len(v) for v in m.splits.values()) == 50


def test_manifest_round_trip_and_relative_root(tmp_path, synth_root):
    m = split_dataset(synth_root)
    path = m.save(tmp_path / "manifest.json")
    again = Manifest.load(path)
    assert again.to_dict() == m.to_dict()
    assert all(p.is_file() for p in again.paths("test"))


def test_load_or_split_reads_a_manifest_and_writes_none(tmp_path, synth_root):
    root = tmp_path / "d"
    shutil.copytree(synth_root, root)
    (root / "manifest.json").unlink(missing_ok=True)
    m1 = load_or_split(root)
    assert not (root / "manifest.json").exists()  # the dataset is never written to
    assert load_or_split(root).to_dict() == m1.to_dict()  # the same split every time
    m1.save(root / "manifest.json")  # what `edgevid data split` writes
    m2 = load_or_split(root, seed=99)  # an existing manifest wins: every stage agrees
    assert m1.to_dict() == m2.to_dict()


@pytest.mark.parametrize("setup", ["missing", "empty", "no_videos"])
def test_bad_dataset_folders(tmp_path, setup):
    root = tmp_path / "data"
    if setup != "missing":
        root.mkdir()
    if setup == "no_videos":
        (root / "A").mkdir()
        (root / "A" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not found|no videos"):
        split_dataset(root)


def test_bad_ratios(synth_root):
    with pytest.raises(DataError, match="ratios"):
        split_dataset(synth_root, ratios=(0.5, 0.5, 0.5))


def test_malformed_manifest(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        Manifest.load(p)
    p.write_text('{"classes": []}')
    with pytest.raises(DataError, match="malformed"):
        Manifest.load(p)
