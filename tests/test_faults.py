"""The fault matrix: every command, fed bad values, broken files, a failing disk and signals.

Each case asserts the same contract: a non-zero exit (or the documented success), no
"Traceback", exactly one ``edgevid: error:`` line that names the problem, and no new or
partial file where a good one was expected. Cases run in-process with click's CliRunner
(cheap); only the signal cases need real subprocesses (marked slow).

The disk faults use real filesystems: a read-only tmpfs (EROFS) and a full one (ENOSPC),
mounted by the test when it runs as root, else skipped with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgevid.cli import main
from tests.conftest import MEDIA, ROOT, needs_torch, read_records, with_stop_signals

CLIP = MEDIA / "carphone_pristine.mp4"  # 120 frames, 176x144: the cheapest real clip


def invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def assert_one_line(code: int, out: str, fragment: str, exit_code: int | None = None) -> None:
    assert code != 0, out
    if exit_code is not None:
        assert code == exit_code, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("edgevid: error:")]
    assert len(errors) == 1, out
    assert fragment.lower() in errors[0].lower(), out


# --- 1. bad option values: every numeric option's bounds, every choice ----------------------
BAD_OPTIONS = [
    # (args, fragment of the one error line); X is a path that must not be created
    (["train", "--data", "X", "--out", "X", "--epochs", "0"], "--epochs"),
    (["train", "--data", "X", "--out", "X", "--lr", "0"], "--lr"),
    (["train", "--data", "X", "--out", "X", "--lr", "-1e-3"], "--lr"),
    (["train", "--data", "X", "--out", "X", "--batch-size", "0"], "--batch-size"),
    (["train", "--data", "X", "--out", "X", "--hflip", "2"], "--hflip"),
    (["train", "--data", "X", "--out", "X", "--hflip", "-0.5"], "--hflip"),
    (["train", "--data", "X", "--out", "X", "--label-smoothing", "1"], "--label-smoothing"),
    (["train", "--data", "X", "--out", "X", "--workers", "-1"], "--workers"),
    (["train", "--data", "X", "--out", "X", "--save-every", "-1"], "--save-every"),
    (["train", "--data", "X", "--out", "X", "--seed", "-1"], "--seed"),
    (["train", "--data", "X", "--out", "X", "--unfreeze", "0"], "--unfreeze"),
    (["train", "--data", "X", "--out", "X", "--unfreeze", "-2"], "--unfreeze"),
    (["train", "--data", "X", "--out", "X", "--epochs", "many"], "--epochs"),
    (["prune", "--checkpoint", "X", "--out", "X", "--keep", "0"], "--keep"),
    (["prune", "--checkpoint", "X", "--out", "X", "--recover-epochs", "-3"], "--recover-epochs"),
    (["prune", "--checkpoint", "X", "--out", "X", "--lr", "0"], "--lr"),
    (["prune", "--checkpoint", "X", "--out", "X", "--batch-size", "0"], "--batch-size"),
    (["prune", "--checkpoint", "X", "--out", "X", "--kd-alpha", "1.5"], "--kd-alpha"),
    (["prune", "--checkpoint", "X", "--out", "X", "--kd-temperature", "0"], "--kd-temperature"),
    (["prune", "--checkpoint", "X", "--out", "X", "--strategy", "random"], "--strategy"),
    (["eval", "--model", "X", "--data", "X", "--batch-size", "0"], "--batch-size"),
    (["eval", "--model", "X", "--data", "X", "--split", "holdout"], "--split"),
    (["eval", "--model", "X", "--data", "X", "--device", "tpu"], "--device"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--calib-clips", "0"], "--calib-clips"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--verify-clips", "0"], "--verify"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--opset", "12"], "--opset"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--workspace-mb", "0"], "--workspace"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--dla-core", "-1"], "--dla-core"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--int8", "int4"], "--int8"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--batch", "4:2:1"], "--batch"),
    (["export", "--variant", "tiny-scratch", "--out", "X", "--batch", "a:b"], "--batch"),
    (["run", "-s", "X", "-m", "X", "--every", "0"], "--every"),
    (["run", "-s", "X", "-m", "X", "--stride", "0"], "--stride"),
    (["run", "-s", "X", "-m", "X", "--threshold", "1.5"], "--threshold"),
    (["run", "-s", "X", "-m", "X", "--top-k", "0"], "--top-k"),
    (["run", "-s", "X", "-m", "X", "--max-frames", "0"], "--max-frames"),
    (["run", "-s", "X", "-m", "X", "--reconnect-timeout", "-5"], "--reconnect-timeout"),
    (["run", "-s", "X", "-m", "X", "--timeout", "0"], "--timeout"),
    (["run", "-s", "X", "-m", "X", "--queue-size", "0"], "--queue-size"),
    (["run", "-s", "X", "-m", "X", "--threads", "0"], "--threads"),
    (["run", "-s", "X", "-m", "X", "--device", "npu"], "--device"),
    (["run", "-s", "X", "-m", "X", "--smooth", "ema:abc"], "--smooth"),
    (["run", "-s", "X", "-m", "X", "--smooth", "median:3"], "--smooth"),
    (["run", "-s", "X", "-m", "X", "--smooth", "mean:0"], "--smooth"),
    (["bench", "-m", "X", "-s", "X", "--threads", "-2"], "--threads"),
    (["bench", "-m", "X", "-s", "X", "--target-fps", "0"], "--target-fps"),
    (["bench", "-m", "X", "-s", "X", "--every", "0"], "--every"),
    (["bench", "-m", "X", "-s", "X", "--max-frames", "0"], "--max-frames"),
    (["data", "synth", "X", "--classes", "1"], "--classes"),
    (["data", "synth", "X", "--classes", "9"], "--classes"),
    (["data", "synth", "X", "--clips-per-class", "0"], "--clips-per-class"),
    (["data", "synth", "X", "--fps", "0"], "--fps"),
    (["data", "synth", "X", "--seed", "-1"], "--seed"),
    (["data", "synth", "X", "--size", "4x4"], "--size"),
    (["data", "synth", "X", "--clips-per-group", "0"], "--clips-per-group"),
    (["data", "split", "X", "--ratios", "1,2"], "--ratios"),
    (["data", "split", "X", "--ratios", "0,0.5,0.5"], "train fraction"),
    (["data", "split", "X", "--ratios", "0.5,0.5,0.5"], "sum to 1"),
    (["data", "split", "X", "--ratios", "nan,0,1"], "--ratios"),
    (["data", "split", "X", "--ratios", "-0.2,0.6,0.6"], "--ratios"),
    (["demo", "--out", "X", "--epochs", "0"], "--epochs"),
    (["demo", "--out", "X", "--clips-per-class", "1"], "--clips-per-class"),
]


@pytest.mark.parametrize(
    "args, fragment", BAD_OPTIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_OPTIONS]
)
def test_bad_option_value(args, fragment, tmp_path):
    target = tmp_path / "new"
    code, out = invoke([target if a == "X" else a for a in args])
    assert_one_line(code, out, fragment, exit_code=2)
    assert not target.exists()


def test_every_numeric_option_shows_its_range_in_help():
    """--help of every command prints a range or a choice for each option taking a number."""
    import click

    def commands(group):
        for cmd in group.commands.values():
            yield from commands(cmd) if isinstance(cmd, click.Group) else [cmd]

    loose = [
        f"{cmd.name} {p.opts[0]}"
        for cmd in commands(main)
        for p in cmd.params
        if isinstance(p, click.Option) and p.type in (click.INT, click.FLOAT)
    ]
    assert loose == []


# --- 2. corrupt, truncated and foreign files -----------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_onnx, tiny_checkpoint, synth_root) -> dict[str, Path]:
    """One broken file of each kind edgevid reads, each beside good ones."""
    d = tmp_path_factory.mktemp("broken")
    good = tiny_onnx.read_bytes()
    f: dict[str, Path] = {}

    def put(name: str, data: bytes, sidecar: bool = True) -> Path:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if sidecar:
            shutil.copy(tiny_onnx.with_suffix(".json"), path.with_suffix(".json"))
        return path

    f["garbage-onnx"] = put("garbage/m.onnx", os.urandom(4096))
    f["truncated-onnx"] = put("truncated/m.onnx", good[: len(good) // 2])
    f["foreign-onnx"] = put("foreign/m.onnx", (MEDIA / "carphone_pristine.mp4").read_bytes()[:9000])
    f["empty-onnx"] = put("empty/m.onnx", b"")
    f["garbage-engine"] = put("engine/m.engine", os.urandom(2048))

    import onnx

    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    stripped = d / "nometa" / "m.onnx"
    stripped.parent.mkdir()
    onnx.save(model, str(stripped))
    meta = json.loads(tiny_onnx.with_suffix(".json").read_text())
    for name, edit in {
        "labels-string": lambda m: m.update(labels="abc"),
        "missing-size": lambda m: m.pop("image_size"),
        "bad-precision": lambda m: m.update(precision="int4"),
    }.items():
        folder = d / name
        folder.mkdir()
        shutil.copy(stripped, folder / "m.onnx")
        bad = json.loads(json.dumps(meta))
        edit(bad)
        (folder / "m.json").write_text(json.dumps(bad))
        f[f"sidecar-{name}"] = folder / "m.onnx"
    (d / "nosidecar").mkdir()
    shutil.copy(stripped, d / "nosidecar" / "m.onnx")
    f["no-metadata"] = d / "nosidecar" / "m.onnx"

    def checkpoint(name: str, edit) -> Path:
        folder = d / name
        shutil.copytree(tiny_checkpoint, folder)
        edit(folder)
        return folder

    f["ckpt-corrupt-weights"] = checkpoint(
        "ck1", lambda p: (p / "model.safetensors").write_bytes(b"\x00" * 100)
    )
    f["ckpt-truncated-weights"] = checkpoint(
        "ck2",
        lambda p: (p / "model.safetensors").write_bytes(
            (tiny_checkpoint / "model.safetensors").read_bytes()[:5000]
        ),
    )
    f["ckpt-bad-meta"] = checkpoint(
        "ck3", lambda p: (p / "edgevid.json").write_text('{"labels": "abc"}')
    )
    f["ckpt-no-config"] = checkpoint("ck4", lambda p: (p / "config.json").unlink())

    manifest = json.loads(json.dumps(_manifest_dict(synth_root)))
    traversal = json.loads(json.dumps(manifest))
    traversal["splits"]["train"][0]["path"] = "../../../etc/passwd"
    out_of_range = json.loads(json.dumps(manifest))
    out_of_range["splits"]["val"][0]["label"] = 99
    f["manifest-binary"] = put("mf/binary.json", os.urandom(300), sidecar=False)
    f["manifest-not-json"] = put("mf/text.json", b'{"root": ', sidecar=False)
    f["manifest-traversal"] = put("mf/trav.json", json.dumps(traversal).encode(), sidecar=False)
    f["manifest-label"] = put("mf/label.json", json.dumps(out_of_range).encode(), sidecar=False)
    f["manifest-list"] = put("mf/list.json", b"[1, 2, 3]", sidecar=False)

    f["video-empty"] = put("v/empty.mp4", b"", sidecar=False)
    f["video-text"] = put("v/text.mp4", b"not a video at all\n" * 100, sidecar=False)
    f["video-head"] = put("v/head.mp4", CLIP.read_bytes()[:2000], sidecar=False)

    run_dir = d / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"variant": "tiny-scratch", "epochs": "three"}')
    f["run-bad-config"] = run_dir
    return f


def _manifest_dict(root: Path) -> dict:
    from edgevid.core.manifest import split_dataset

    return split_dataset(root).to_dict()


BROKEN_FILES = [
    # (args with {key} for a broken file, fragment); with torch where a checkpoint is read
    (["run", "-s", CLIP, "-m", "{garbage-onnx}", "--device", "cpu"], "garbage/m.onnx"),
    (["run", "-s", CLIP, "-m", "{truncated-onnx}", "--device", "cpu"], "truncated/m.onnx"),
    (["run", "-s", CLIP, "-m", "{foreign-onnx}", "--device", "cpu"], "foreign/m.onnx"),
    (["run", "-s", CLIP, "-m", "{empty-onnx}", "--device", "cpu"], "empty/m.onnx"),
    (["run", "-s", CLIP, "-m", "{garbage-engine}"], "engine"),
    (["run", "-s", CLIP, "-m", "{sidecar-labels-string}", "--device", "cpu"], "labels"),
    (["run", "-s", CLIP, "-m", "{sidecar-missing-size}", "--device", "cpu"], "image_size"),
    (["run", "-s", CLIP, "-m", "{sidecar-bad-precision}", "--device", "cpu"], "precision"),
    (["run", "-s", CLIP, "-m", "{no-metadata}", "--device", "cpu"], "metadata"),
    (["run", "-s", "{video-empty}", "-m", "{tiny}", "--device", "cpu"], "empty.mp4"),
    (["run", "-s", "{video-text}", "-m", "{tiny}", "--device", "cpu"], "text.mp4"),
    (["run", "-s", "{video-head}", "-m", "{tiny}", "--device", "cpu"], "head.mp4"),
    (["bench", "-m", "{tiny}", "-s", "{video-text}", "--device", "cpu"], "text.mp4"),
    (["bench", "-m", "{garbage-onnx}", "-s", CLIP, "--device", "cpu"], "m.onnx"),
    (["eval", "--model", "{garbage-onnx}", "--data", "{synth}"], "garbage/m.onnx"),
    (["eval", "--model", "{sidecar-labels-string}", "--data", "{synth}"], "labels"),
    (["eval", "--model", "{ckpt-corrupt-weights}", "--data", "{synth}"], "corrupt"),
    (["eval", "--model", "{ckpt-bad-meta}", "--data", "{synth}"], "labels"),
    (["eval", "--model", "{tiny}", "--data", "{manifest-traversal}"], "inside the dataset root"),
    (["export", "--checkpoint", "{ckpt-truncated-weights}", "--out", "X"], "ck2"),
    (["export", "--checkpoint", "{ckpt-bad-meta}", "--out", "X"], "labels"),
    (["export", "--checkpoint", "{ckpt-no-config}", "--out", "X"], "ck4"),
    (["train", "--variant", "tiny-scratch", "--data", "{manifest-binary}", "--out", "X"], "binary"),
    (["train", "--variant", "tiny-scratch", "--data", "{manifest-not-json}", "--out", "X"], "JSON"),
    (
        ["train", "--variant", "tiny-scratch", "--data", "{manifest-traversal}", "--out", "X"],
        "path",
    ),
    (["train", "--variant", "tiny-scratch", "--data", "{manifest-label}", "--out", "X"], "label"),
    (["train", "--variant", "tiny-scratch", "--data", "{manifest-list}", "--out", "X"], "object"),
    (["train", "--resume", "{run-bad-config}"], "epochs"),
    (["prune", "--checkpoint", "{ckpt-bad-meta}", "--keep", "2", "--out", "X"], "labels"),
    (["data", "inspect", "{manifest-label}"], "label"),
]


@needs_torch
@pytest.mark.parametrize(
    "args, fragment", BROKEN_FILES, ids=[f"{a[0]}-{f}" for a, f in BROKEN_FILES]
)
def test_broken_file(args, fragment, files, tiny_onnx, synth_root, tmp_path):
    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    where = {
        **{k: str(v) for k, v in files.items()},
        "tiny": str(tiny_onnx),
        "synth": str(synth_root),
    }
    target = tmp_path / "new"
    before = snapshot(files["garbage-onnx"].parents[1])
    code, out = invoke([target if a == "X" else str(a).format(**where) for a in args])
    assert_one_line(code, out, fragment)
    assert not target.exists()
    assert snapshot(files["garbage-onnx"].parents[1]) == before  # nothing written beside


# --- 3. a failing disk: EROFS, ENOSPC, EEXIST, EISDIR/ENOTDIR --------------------------------
@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    """A read-only tmpfs and a full 2 MiB one (root only; else skipped with the reason)."""
    base = tmp_path_factory.mktemp("disks")
    ro, full = base / "ro", base / "full"
    ro.mkdir()
    full.mkdir()
    mounted = []
    for where, opts in ((ro, "size=1m,ro"), (full, "size=2m")):
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True
        )
        if r.returncode != 0:
            for m in mounted:
                subprocess.run(["umount", str(m)])
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or 'not root'})")
        mounted.append(where)
    with open(full / "filler", "wb") as f:  # fill it to the last byte
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    with contextlib.suppress(OSError):  # and the last few blocks
        (full / "filler2").write_bytes(b"\0" * 4096)
    yield {"ro": ro, "full": full}
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)])


DISK_FAULTS = [
    # (args, fragment, exit code or None: any non-zero); RO/FULL are the mounts, FILE an
    # existing regular file. `run` checks its outputs before opening anything (exit 2 then).
    (
        ["run", "-s", CLIP, "-m", "{tiny}", "--device", "cpu", "--json", "RO/r.jsonl"],
        "read-only",
        None,
    ),
    (["run", "-s", CLIP, "-m", "{tiny}", "--device", "cpu", "-o", "RO/r.mp4"], "read-only", None),
    (
        ["run", "-s", CLIP, "-m", "{tiny}", "--device", "cpu", "--json", "FULL/r.jsonl"],
        "no space",
        None,
    ),
    (["run", "-s", CLIP, "-m", "{tiny}", "--device", "cpu", "-o", "FULL/r.mp4"], "r.mp4", None),
    (
        ["run", "-s", CLIP, "-m", "{tiny}", "--device", "cpu", "--json", "FILE/r.jsonl"],
        "FILE",
        None,
    ),
    (["run", "-s", CLIP, "-m", "{tiny}", "--device", "cpu", "-o", "DIR"], "directory", 2),
    (
        ["bench", "-m", "{tiny}", "-s", CLIP, "--device", "cpu", "--json", "RO/b.json"],
        "read-only",
        1,
    ),
    (["data", "synth", "RO/synth", "--clips-per-class", "2"], "read-only", 1),
    (["data", "synth", "FULL/synth", "--clips-per-class", "2"], "FULL/synth", None),
    (["data", "split", "{synth}", "--out", "RO/m.json"], "read-only", 1),
    (["data", "split", "{synth}", "--out", "FILE/m.json"], "FILE", 1),
    (["export", "--checkpoint", "{ckpt}", "--no-verify", "--out", "RO/exp"], "read-only", 1),
    (["export", "--checkpoint", "{ckpt}", "--no-verify", "--out", "FILE"], "not a directory", 1),
    (["eval", "--model", "{tiny}", "--data", "{synth}", "--out", "RO/ev"], "read-only", 1),
    (["eval", "--model", "{tiny}", "--data", "{synth}", "--out", "FILE"], "FILE", 1),
    (
        ["train", "--variant", "tiny-scratch", "--data", "{synth}", "--out", "RO/run"],
        "read-only",
        1,
    ),
    (
        [
            "prune",
            "--checkpoint",
            "{ckpt}",
            "--keep",
            "2",
            "--recover-epochs",
            "0",
            "--strategy",
            "last",
            "--data",
            "{synth}",
            "--out",
            "RO/p",
        ],
        "read-only",
        1,
    ),  # fmt: skip
]


@needs_torch
@pytest.mark.parametrize(
    "args, fragment, exit_code",
    DISK_FAULTS,
    ids=[
        f"{a[0]}-{next(x for x in a if str(x)[:2] in ('RO', 'FU', 'FI', 'DI'))}"
        for a, _, _ in DISK_FAULTS
    ],
)
def test_disk_fault(
    args, fragment, exit_code, disks, tiny_onnx, tiny_checkpoint, synth_root, tmp_path
):
    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me\n")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    where = {"tiny": str(tiny_onnx), "ckpt": str(tiny_checkpoint), "synth": str(synth_root)}

    def place(a) -> str:
        a = str(a).format(**where)
        for key, path in (("RO", disks["ro"]), ("FULL", disks["full"]), ("FILE", a_file),
                          ("DIR", a_dir)):  # fmt: skip
            if a == key or a.startswith(key + "/"):
                return str(path) + a[len(key) :]
        return a

    before = {k: snapshot(v) for k, v in disks.items()}
    synth_before = snapshot(synth_root)
    code, out = invoke([place(a) for a in args])
    fragment = place(fragment) if fragment in ("FILE", "DIR") else fragment
    assert_one_line(code, out, fragment, exit_code)
    live_log = disks["full"] / "r.jsonl"  # documented: run's --json is a live log, kept
    if "FULL/r.jsonl" in args and live_log.exists():
        text = live_log.read_text()
        assert all(read_records(text))  # whole lines only, each valid against its schema
        live_log.unlink()
    assert {k: snapshot(v) for k, v in disks.items()} == before  # no partial file anywhere
    assert a_file.read_text() == "keep me\n" and list(a_dir.iterdir()) == []
    assert snapshot(synth_root) == synth_before  # the dataset is never written to


def test_bench_keeps_its_results_when_the_final_write_fails(disks, tiny_onnx):
    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    code, out = invoke(["bench", "-m", tiny_onnx, "-s", CLIP, "--device", "cpu",
                        "--max-frames", "40", "--json", disks["ro"] / "b.json"])  # fmt: skip
    assert code == 1 and "read-only" in out.lower()
    rows = json.loads(out[out.index("[\n") : out.rindex("]") + 1])
    assert rows and rows[0]["model"].endswith(tiny_onnx.name)


EXISTING = [
    (["train", "--variant", "tiny-scratch", "--data", "{synth}", "--out", "NONEMPTY"], "not empty"),
    (
        [
            "prune",
            "--checkpoint",
            "{ckpt}",
            "--keep",
            "2",
            "--data",
            "{synth}",
            "--out",
            "NONEMPTY",
        ],
        "not empty",
    ),  # fmt: skip
    (["data", "split", "{synth}", "--out", "MANIFEST"], "--force"),
    (["data", "synth", "NONEMPTY"], "NONEMPTY"),
    (["export", "--checkpoint", "{ckpt}", "--no-verify", "--out", "OTHER"], "exported from"),
]


@needs_torch
@pytest.mark.parametrize("args, fragment", EXISTING, ids=[a[0] for a, _ in EXISTING])
def test_existing_output_is_never_replaced(args, fragment, tiny_onnx, tiny_checkpoint, synth_root,
                                           tmp_path):  # fmt: skip
    nonempty = tmp_path / "nonempty"
    nonempty.mkdir()
    (nonempty / "mine.txt").write_text("mine")
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_onnx, other / "tiny-prune8.onnx")  # a graph of another model, same name
    shutil.copy(tiny_onnx.with_suffix(".json"), other / "tiny-prune8.json")
    where = {"synth": str(synth_root), "ckpt": str(tiny_checkpoint)}
    names = {"NONEMPTY": nonempty, "MANIFEST": manifest, "OTHER": other}
    before = snapshot(tmp_path)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    code, out = invoke([str(names.get(a, a)).format(**where) for a in args])
    assert_one_line(code, out, str(names.get(fragment, fragment)))
    assert snapshot(tmp_path) == before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamp


# --- 4. datasets that cannot train, or train badly ------------------------------------------
@needs_torch
def test_one_class_dataset_is_refused(synth_root, tmp_path):
    one = tmp_path / "one"
    shutil.copytree(synth_root / "Grow", one / "Grow")
    code, out = invoke(
        ["train", "--variant", "tiny-scratch", "--data", one, "--out", tmp_path / "r"]
    )
    assert_one_line(code, out, "at least 2 classes")
    assert not (tmp_path / "r").exists()


def test_split_says_what_it_got_and_why(synth_root, tmp_path):
    """5 groups per class cannot give 80/10/10: the split warns with the numbers."""
    data = tmp_path / "d"
    shutil.copytree(synth_root, data, ignore=shutil.ignore_patterns("manifest.json"))
    result = CliRunner().invoke(main, ["data", "split", str(data)])
    assert result.exit_code == 0, result.output
    assert "requested 80/10/10" in result.output and "groups per class" in result.output
    code, out = invoke(["data", "split", data, "--ratios", "1,0,0", "--force"])
    assert code == 0 and "val split is empty" in out and "test split is empty" in out


def test_scratch_model_cannot_be_pruned(tmp_path, synth_root):
    pytest.importorskip("torch")
    from edgevid.train.checkpoint import meta_for, save_checkpoint
    from edgevid.train.models import create_model
    from tests.conftest import SYNTH_LABELS

    model = create_model("tiny-scratch", labels=SYNTH_LABELS)
    ckpt = save_checkpoint(model, meta_for(model), tmp_path / "scratch")
    code, out = invoke(["prune", "--checkpoint", ckpt, "--keep", "1", "--data", synth_root,
                        "--out", tmp_path / "p"])  # fmt: skip
    assert_one_line(code, out, "only TimeSformer variants")
    assert "-1" not in out


def test_int8_static_without_calibration_data_fails_before_loading(tmp_path):
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "edgevid", "export", "--checkpoint", str(tmp_path / "ck"),
         "--int8", "static", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert_one_line(r.returncode, r.stderr, "has no run manifest beside it")
    assert "torch" not in r.stderr and time.perf_counter() - start < 30


# --- 5. signals during train, prune, export and run ----------------------------------------
def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "edgevid", *map(str, args)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=with_stop_signals,
    )  # fmt: skip


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"ended before the signal: {proc.communicate()}"


def _hidden_leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*") if ".trash" not in p.name] if folder.exists() else []


@pytest.fixture(scope="module")
def long_video(tmp_path_factory, media_dir) -> Path:
    from edgevid.core.video import read_video, write_video

    frames, fps = read_video(media_dir / "bikes.mp4")
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", list(frames) * 3, fps)


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("command", ["train", "prune", "export", "run"])
def test_signal_mid_command(command, sig, tmp_path, synth_root, tiny_checkpoint, tiny_onnx,
                            long_video):  # fmt: skip
    out = tmp_path / "out"
    manifest = tmp_path / "manifest.json"
    if command in ("train", "prune"):
        from edgevid.core.manifest import split_dataset

        split_dataset(synth_root).save(manifest)
    args, ready = {
        "train": (["train", "--variant", "tiny-scratch", "--data", manifest, "--epochs", "50",
                   "--out", out, "--quiet"], lambda: (out / "config.json").exists()),
        "prune": (["prune", "--checkpoint", tiny_checkpoint, "--keep", "2", "--data", manifest,
                   "--recover-epochs", "50", "--out", out, "--quiet"],
                  lambda: (out / "config.json").exists()),
        "export": (["export", "--checkpoint", tiny_checkpoint, "--fp16", "--out", out],
                   lambda: any(out.glob(".edgevid-export-*"))),
        "run": (["run", "-s", long_video, "-m", tiny_onnx, "--device", "cpu", "--realtime",
                 "--json", out / "r.jsonl", "-o", out / "r.mp4", "-q"],
                lambda: any(out.glob(".r.mp4.*"))),
    }[command]  # fmt: skip
    if command == "run":
        out.mkdir()
    proc = _spawn(args)
    _wait_for(proc, ready)
    time.sleep(1.0)
    proc.send_signal(SIGNALS[sig])
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    if sig == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    elif command == "run":  # documented: a signal ends a run like the end of the stream
        assert proc.returncode == 0, err
    else:
        assert proc.returncode == (130 if sig == "SIGINT" else 128 + signal.SIGTERM), err
        lines = [line for line in err.strip().splitlines() if line.startswith("edgevid:")]
        assert len(lines) == 1 and ("interrupted" in lines[0] or "terminated" in lines[0]), err
        assert _hidden_leftovers(out) == []  # no temporary file or folder was left behind
    _assert_whole(command, out, killed=sig == "SIGKILL")


def _assert_whole(command: str, out: Path, killed: bool) -> None:
    """Whatever is published under ``out`` is complete: it loads."""
    if command in ("train", "prune"):
        from edgevid.train.checkpoint import load_checkpoint

        for ckpt in ("best", "last"):
            if (out / ckpt).exists():
                load_checkpoint(out / ckpt)
    elif command == "export":
        graphs = list(out.glob("*.onnx")) if out.exists() else []
        assert graphs == []  # nothing is published before every stage has passed
    else:
        from edgevid.core.video import probe_video

        video = out / "r.mp4"
        if killed:
            assert not video.exists()
        else:
            assert probe_video(video).num_frames > 0
            assert all(r["label"] for r in read_records(out / "r.jsonl", "result"))


# --- 6. the network: variants without weights never touch it; offline is found at once ------
@needs_torch
def test_tiny_variant_export_never_touches_the_network(tmp_path, monkeypatch):
    from huggingface_hub import constants

    calls = []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("socket.create_connection", lambda *a, **k: calls.append(a))
    code, out = invoke(["export", "--variant", "tiny-prune8", "--out", tmp_path / "o"])
    assert_one_line(code, out, "has no published pretrained weights")
    assert calls == [] and not (tmp_path / "o").exists()


@needs_torch
def test_unreachable_hub_switches_to_offline_at_once(monkeypatch):
    """One probe of a closed port: refused at once, and the hub client goes offline (cache
    only) instead of retrying for minutes."""
    import socket

    from huggingface_hub import constants

    from edgevid.train.models.timesformer import offline_unless_hub_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert offline_unless_hub_reachable() is True
    assert constants.HF_HUB_OFFLINE is True and constants.is_offline_mode()


# --- 7. a video that stops decoding part-way: resync, warn with the numbers, count it --------
MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}  # atoms holding atoms


def mp4_atoms(data: bytes | bytearray, start: int = 0, end: int | None = None):
    """(kind, offset, size) of each atom between ``start`` and ``end``."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        size = size or end - start  # 0: runs to the end
        yield kind, start, size
        start += size


def _shift_chunk_offsets(moov: bytearray, by: int, start: int = 8, end: int | None = None):
    for kind, at, size in mp4_atoms(moov, start, end):
        if kind in MP4_CONTAINERS:
            _shift_chunk_offsets(moov, by, at + 8, at + size)
        elif kind in (b"stco", b"co64"):  # chunk offsets, absolute in the file
            fmt = ">I" if kind == b"stco" else ">Q"
            width = struct.calcsize(fmt)
            (n,) = struct.unpack(">I", moov[at + 12 : at + 16])
            for k in range(at + 16, at + 16 + n * width, width):
                (offset,) = struct.unpack(fmt, moov[k : k + width])
                moov[k : k + width] = struct.pack(fmt, offset + by)


def faststart(data: bytes) -> bytes:
    """What ``ffmpeg -movflags +faststart`` does: the index (moov) moved before the frame
    data, every chunk offset shifted by its size. A download cut short then still opens."""
    top = list(mp4_atoms(data))
    ((_, at, size),) = [a for a in top if a[0] == b"moov"]
    moov = bytearray(data[at : at + size])
    _shift_chunk_offsets(moov, size)
    ftyp = b"".join(data[a : a + s] for k, a, s in top if k == b"ftyp")
    rest = b"".join(data[a : a + s] for k, a, s in top if k not in (b"ftyp", b"moov"))
    return ftyp + bytes(moov) + rest


def zero_a_block(data: bytes) -> bytes:
    """40 kB zeroed in the middle of the frame data."""
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + 40_000] = bytes(40_000)
    return bytes(damaged)


def truncate_after_faststart(data: bytes) -> bytes:
    """A faststart file cut at half its length: the index declares every frame."""
    remuxed = faststart(data)
    return remuxed[: len(remuxed) // 2]


DAMAGE = {  # kind -> (damage, fewest frames that must decode of bikes.mp4's 250)
    "zeroed-block": (zero_a_block, 200),  # past the damaged block (it stopped at 120)
    "truncated-faststart": (truncate_after_faststart, 100),  # every frame before the cut
}


@pytest.fixture(scope="module", params=sorted(DAMAGE))
def damaged_clip(request, tmp_path_factory, media_dir) -> tuple[Path, int]:
    """bikes.mp4 (250 frames) damaged one way; the fewest frames that must decode."""
    damage, least = DAMAGE[request.param]
    path = tmp_path_factory.mktemp(request.param) / "Grow" / "v_Grow_g01_c01.mp4"
    path.parent.mkdir()
    path.write_bytes(damage((media_dir / "bikes.mp4").read_bytes()))
    return path, least


def test_faststart_remux_keeps_every_frame(media_dir, tmp_path):
    from edgevid.core.video import iter_frames

    path = tmp_path / "fs.mp4"
    path.write_bytes(faststart((media_dir / "bikes.mp4").read_bytes()))
    assert [a[0] for a in mp4_atoms(path.read_bytes())][:2] == [b"ftyp", b"moov"]
    partial: list[str] = []
    assert sum(1 for _ in iter_frames(path, partial)) == 250 and partial == []


def test_damaged_video_resyncs_and_says_how_much_decoded(damaged_clip):
    from edgevid.core.video import iter_frames

    path, least = damaged_clip
    partial: list[str] = []
    n = sum(1 for _ in iter_frames(path, partial))
    assert least < n < 250
    assert len(partial) == 1 and f"decoded {n} of the 250 frames" in partial[0]


def test_run_warns_about_a_damaged_file_and_counts_it(damaged_clip, tiny_onnx, tmp_path):
    damaged_clip, _ = damaged_clip
    code, out = invoke(["run", "-s", damaged_clip, "-m", tiny_onnx, "--device", "cpu",
                        "--json", tmp_path / "r.jsonl"])  # fmt: skip
    assert code == 0 and "Traceback" not in out  # documented: the decodable part is used
    warning = [line for line in out.splitlines() if "of the 250 frames" in line]
    assert len(warning) == 1 and "damaged" in warning[0], out
    code, out = invoke(["run", "-s", damaged_clip, "-m", tiny_onnx, "--device", "cpu", "-q",
                        "--json", tmp_path / "q.jsonl"])  # fmt: skip
    assert code == 0 and out.count("edgevid: warning:") == 1 and "of the 250 frames" in out


@needs_torch
def test_eval_lists_a_damaged_clip_as_partial(damaged_clip, tiny_onnx, tmp_path):
    damaged_clip, _ = damaged_clip
    code, out = invoke(["eval", "--model", tiny_onnx, "--data", damaged_clip.parents[1],
                        "--out", tmp_path / "ev"])  # fmt: skip
    assert code == 0, out
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["num_clips"] == 1 and report["skipped"] == []
    assert len(report["partial"]) == 1 and "of the 250 frames" in report["partial"][0]
    assert "edgevid: warning:" in out


def test_int8_static_calibrates_on_the_checkpoint_runs_own_split(tmp_path):
    """--int8 static without --calib-data: the run's manifest beside the checkpoint."""
    from edgevid.errors import ExportError
    from edgevid.export.pipeline import ExportConfig, default_calib_data

    (tmp_path / "run" / "best").mkdir(parents=True)
    cfg = ExportConfig(checkpoint=str(tmp_path / "run" / "best"))
    with pytest.raises(ExportError, match="no run manifest beside it"):
        default_calib_data(cfg)
    (tmp_path / "run" / "manifest.json").write_text("{}")
    assert default_calib_data(cfg) == str(tmp_path / "run" / "manifest.json")
    with pytest.raises(ExportError, match="--calib-data"):
        default_calib_data(ExportConfig(variant="tiny-prune8", random_init=True))
    cpu = ExportConfig(variant="tiny-prune8", random_init=True, precisions=("int8-cpu",))
    with pytest.raises(ExportError, match="^--int8 cpu needs calibration clips: --calib-data"):
        default_calib_data(cpu)


@needs_torch
def test_train_uses_damaged_clips_as_far_as_they_decode_and_counts_them(synth_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    damaged = sorted((data / "Grow").glob("*.mp4"))  # one class, so every split has some
    for clip in damaged:
        clip.write_bytes(truncate_after_faststart(clip.read_bytes()))
    code, out = invoke(["train", "--variant", "tiny-scratch", "--data", data, "--epochs", "1",
                        "--weights", "random", "--out", tmp_path / "run", "--quiet"])  # fmt: skip
    assert code == 0 and "Traceback" not in out, out
    warned = [line for line in out.splitlines() if line.startswith("edgevid: warning:")]
    assert warned and all("frames its container declares" in w for w in warned), out
    named = {Path(w.split()[2].rstrip(":")).name for w in warned}
    assert named <= {p.name for p in damaged} and len(named) == len(warned)  # each said once
    n = int(out.split(" damaged clips trained on the frames that decoded")[0].split()[-1])
    assert n == len(named)
    report = json.loads((tmp_path / "run" / "confusion_matrix.json").read_text())
    test_split = json.loads((tmp_path / "run" / "manifest.json").read_text())["splits"]["test"]
    damaged_in_test = [e for e in test_split if "Grow" in str(e)]
    assert len(report["partial"]) == len(damaged_in_test)
