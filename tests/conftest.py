"""Shared fixtures: real clips from ../shared/media, a small synthetic dataset, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a network that is not there
# One torch (OpenMP) thread, in the tests and the commands they start: the tiny models gain
# nothing from a second thread, and on a busy 2-core machine the threads wait on each other
# (tests/test_prune.py, load average 5: 64 s with torch's default of 2 threads, 16 s with 1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# --device auto on a CPU: ONNX Runtime, not the faster-measured engine (which can flip with
# load), so results compare exactly; tests of the auto choice unset it (test_openvino.py)
os.environ.setdefault("EDGEVID_CPU_BACKEND", "onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
MEDIA_CLIPS = {  # name: (frames, width, height, fps) from ../shared/media/README.md
    "bikes.mp4": (250, 640, 272, 25.0),
    "bigbuckbunny.mp4": (132, 1280, 720, 25.0),
    "carphone_pristine.mp4": (120, 176, 144, 29.97),
}


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"real clips not found at {MEDIA} (the shared/ folder beside the checkout)")
    return MEDIA


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 motion classes x 10 clips, 80x64 at 15 fps: real .mp4 files, UCF101 names, two
    clips per group (scene) so that group-aware splitting has groups to keep whole."""
    from edgevid.train.synth import SynthConfig, make_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(root, classes=5, clips_per_class=10, seed=0,
                           config=SynthConfig(clips_per_group=2))  # fmt: skip
    return root


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


needs_torch = pytest.mark.skipif(not has_torch(), reason="needs the train extra (torch)")


SYNTH_LABELS = ["Grow", "MoveDown", "MoveLeft", "MoveRight", "MoveUp"]  # sorted folder names
FAST_VARIANT = "tiny-prune8"  # the variant of tiny_checkpoint / tiny_onnx: built once a session


def one_fast(values, fast=None) -> list:
    """``values`` (a registry's entries) as parameters: ``fast`` (default: the first) runs in
    the fast loop, every other one in the full suite only (marked slow). A new registry
    entry is still tested, where it costs nothing to the fast loop."""
    fast = values[0] if fast is None else fast
    return [pytest.param(v, marks=() if v == fast else pytest.mark.slow) for v in values]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) tiny-prune8 checkpoint over the synthetic labels."""
    pytest.importorskip("torch")
    import torch

    from edgevid.train.checkpoint import meta_for, save_checkpoint
    from edgevid.train.models import create_model

    torch.manual_seed(0)
    model = create_model(FAST_VARIANT, labels=SYNTH_LABELS).eval()
    return save_checkpoint(model, meta_for(model), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported to FP32 ONNX (with metadata_props and sidecar)."""
    pytest.importorskip("onnx")
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(tiny_checkpoint)
    return torch_to_onnx(model, meta, tmp_path_factory.mktemp("onnx") / f"{FAST_VARIANT}.onnx")


@pytest.fixture(scope="session")
def tiny_raw_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported with --raw-input: uint8 (B, T, H, W, 3) frames in."""
    pytest.importorskip("onnx")
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import load_checkpoint

    model, meta = load_checkpoint(tiny_checkpoint)
    return torch_to_onnx(model, meta, tmp_path_factory.mktemp("raw") / "raw.onnx", raw_input=True)


def with_stop_signals() -> None:
    """``preexec_fn`` for a child that must see the stop signals a test sends it: a shell's
    background job starts with SIGINT ignored and a ``nohup`` one with SIGHUP ignored; the
    child inherits that (Python then installs no KeyboardInterrupt, and ``edgevid run`` keeps
    a signal that was ignored on purpose ignored), so a suite started that way would see
    those signals do nothing."""
    import signal

    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def check_record(rec: dict, kind: str | None = None) -> dict:
    """``rec`` against the shipped JSON Schema of its type (edgevid/schemas/<type>.json), and
    no field the schema does not describe (the schemas let readers ignore new fields; the
    tests keep the files complete). ``kind``: the type it must have."""
    validator = _validator(rec.get("type") if kind is None else kind)
    errors = sorted(str(e.message) for e in validator.iter_errors(rec))
    assert not errors, f"{rec}: {errors}"
    undocumented = set(rec) - set(validator.schema["properties"])
    assert not undocumented, f"fields missing from the schema: {undocumented}"
    return rec


def read_records(source: str | Path, kind: str | None = None) -> list[dict]:
    """Every line of a JSON-lines output (text, or a file), each checked by check_record."""
    import json

    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return [check_record(json.loads(line), kind) for line in text.splitlines()]


_VALIDATORS: dict = {}


def _validator(kind: str):
    if kind not in _VALIDATORS:
        import jsonschema

        from edgevid.runtime.records import schema

        cls = jsonschema.Draft202012Validator
        cls.check_schema(schema(kind))
        _VALIDATORS[kind] = cls(schema(kind), format_checker=cls.FORMAT_CHECKER)
    return _VALIDATORS[kind]


def invoke(args: list, env: dict | None = None) -> tuple[int, str]:
    """``edgevid ARGS`` in this process (click's runner): exit code and its whole output."""
    from click.testing import CliRunner

    from edgevid.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def assert_one_line(code: int, out: str, *fragments: str) -> str:
    """Exit 2, no traceback, exactly one ``edgevid: error:`` line holding ``fragments``;
    returns that line."""
    assert code == 2, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("edgevid: error:")]
    assert len(errors) == 1, out
    for fragment in fragments:
        assert fragment in errors[0], out
    return errors[0]
