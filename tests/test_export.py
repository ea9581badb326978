"""ONNX export: every variant matches PyTorch, opsets, raw-input graphs, FP16, metadata, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from edgevid.cli import main  # noqa: E402
from edgevid.core.artifact import sidecar_path  # noqa: E402
from edgevid.core.clips import ClipSet, graph_input, load_clip  # noqa: E402
from edgevid.core.meta import ONNX_META_KEY, ModelMeta  # noqa: E402
from edgevid.core.onnx_file import read_metadata  # noqa: E402
from edgevid.errors import ExportError  # noqa: E402
from edgevid.export.fp16 import onnx_to_fp16  # noqa: E402
from edgevid.export.torch_to_onnx import torch_to_onnx  # noqa: E402
from edgevid.export.verify import model_logits, torch_logits, verify_graph  # noqa: E402
from edgevid.train.checkpoint import load_checkpoint, meta_for  # noqa: E402
from edgevid.train.models import create_model, list_models  # noqa: E402
from tests.conftest import FAST_VARIANT, SYNTH_LABELS, one_fast  # noqa: E402

TINY = list_models("tiny-*")


def random_clips(meta: ModelMeta, n: int = 3, seed: int = 0) -> ClipSet:
    rng = np.random.default_rng(seed)
    s = meta.image_size
    frames = rng.integers(0, 256, (n, meta.num_frames, s, s, 3), dtype=np.uint8)
    return ClipSet(frames, [None] * n, ["random"] * n)


def synthetic_clips(root: Path, meta: ModelMeta, n: int = 10) -> ClipSet:
    from edgevid.core.clips import folder_clips

    return folder_clips(root, meta, n)


@pytest.fixture(scope="module", params=one_fast(TINY, FAST_VARIANT))
def exported(request, tmp_path_factory):
    if request.param == FAST_VARIANT:  # the session's graph of this variant: no second export
        model, meta = load_checkpoint(request.getfixturevalue("tiny_checkpoint"))
        return model.eval(), meta, request.getfixturevalue("tiny_onnx")
    torch.manual_seed(0)
    model = create_model(request.param, labels=SYNTH_LABELS).eval()
    meta = meta_for(model)
    path = torch_to_onnx(model, meta, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx")
    return model, meta, path


@pytest.mark.slow  # measured 25-90 s on the 2-core reference CPU
def test_every_variant_exports_a_clean_graph_that_matches_pytorch(exported):
    model, meta, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert graph.opset_import[0].version == 17
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("Shape") <= 8  # batch is symbolic: no per-reshape shape arithmetic
    batch = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # dynamic batch
    clips = random_clips(meta, n=3)  # batch 3: not the batch size it was traced with
    ref = torch_logits(model, clips, meta)
    out = model_logits(path, clips, batch_size=3)[0]
    assert out.shape == (3, meta.num_classes)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    assert verify_graph(path, ref, clips).passed


def test_metadata_round_trips(exported):
    _, meta, path = exported
    expected = meta.replace(precision="fp32", input_format="float")
    assert read_metadata(path) == expected
    assert ModelMeta.load(sidecar_path(path)) == expected
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    embedded = session.get_modelmeta().custom_metadata_map[ONNX_META_KEY]
    assert ModelMeta.from_json(embedded) == expected


@pytest.fixture(scope="module")
def prune8(tiny_checkpoint, tiny_onnx, tmp_path_factory):
    """The shared tiny-prune8 checkpoint, its FP32 graph, and a folder for more graphs."""
    model, meta = load_checkpoint(tiny_checkpoint)
    return model, meta, tiny_onnx, tmp_path_factory.mktemp("prune8")


@pytest.mark.slow  # measured 25-90 s on the 2-core reference CPU
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_opset16_writes_layernorm_out_and_still_matches(prune8, exporter):
    model, meta, _, tmp = prune8
    path = torch_to_onnx(model, meta, tmp / f"{exporter}16.onnx", opset=16, exporter=exporter)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 16
    assert "LayerNormalization" not in {n.op_type for n in graph.graph.node}  # TensorRT 8.5
    assert any("/decomposed/" in n.name for n in graph.graph.node)  # FP16 keeps these FP32
    clips = random_clips(meta)
    np.testing.assert_allclose(
        model_logits(path, clips)[0], torch_logits(model, clips, meta), atol=1e-4, rtol=0
    )


@pytest.mark.slow  # measured 25-90 s on the 2-core reference CPU
def test_raw_input_graph_equals_host_preprocessing(prune8, tiny_raw_onnx, media_dir):
    model, meta, host, _ = prune8
    raw = tiny_raw_onnx
    session = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type) == ("frames", "tensor(uint8)")
    assert inp.shape[1:] == [meta.num_frames, meta.image_size, meta.image_size, 3]
    assert read_metadata(raw).input_format == "uint8"
    frames = np.stack(
        [load_clip(p, meta.num_frames, meta.image_size) for p in sorted(media_dir.glob("*.mp4"))]
    )  # real clips, decoded and cropped as the runtime does: (N, T, S, S, 3) uint8
    clips = ClipSet(frames, [None] * len(frames), ["media"] * len(frames))
    from_raw = session.run(None, {"frames": graph_input(frames, read_metadata(raw))})[0]
    from_host = model_logits(host, clips)[0]  # host: normalize_clip, then the float graph
    np.testing.assert_allclose(from_raw, from_host, atol=1e-5, rtol=0)


def test_fp16_graph_keeps_fragile_ops_fp32_and_agrees(prune8, synth_root):
    model, meta, fp32, tmp = prune8
    fp16 = onnx_to_fp16(fp32, tmp / "m-fp16.onnx")
    graph = onnx.load(str(fp16))
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert graph.graph.input[0].type.tensor_type.elem_type == f32  # I/O types unchanged
    assert graph.graph.output[0].type.tensor_type.elem_type == f32
    assert any(t.data_type == f16 for t in graph.graph.initializer)  # the bulk is FP16
    inferred = onnx.shape_inference.infer_shapes(graph)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types |= {i.name: i.data_type for i in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax") or "logits" in node.output:
            assert all(types.get(i, f32) == f32 for i in node.input if i), node.name
    meta16 = read_metadata(fp16)
    assert meta16.precision == "fp16" and meta16.extra["fp16"]["fp32_ops"]
    clips = synthetic_clips(synth_root, meta)
    result = verify_graph(fp16, torch_logits(model, clips, meta), clips)
    assert result.passed, result.reason
    assert result.agreement >= 0.95 and result.max_abs < 1e-2
    with pytest.raises(ExportError, match="needs an fp32 graph"):
        onnx_to_fp16(fp16, tmp / "again.onnx")


def test_a_graph_that_fails_the_checker_is_never_written(tiny_onnx, tmp_path):
    from edgevid.core.onnx_file import save_onnx

    meta = read_metadata(tiny_onnx)
    good = save_onnx(onnx.load(str(tiny_onnx)), meta, tmp_path / "m.onnx")
    before = good.read_bytes()
    broken = onnx.load(str(tiny_onnx))
    broken.graph.node[0].input[0] = "no_such_tensor"
    with pytest.raises(ExportError, match="fails onnx.checker"):
        save_onnx(broken, meta, good)
    assert good.read_bytes() == before  # the good graph is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]  # no temp files


@pytest.mark.slow  # a second export (raw input) and a calibration: ~25 s
def test_int8_static_of_a_raw_input_graph_calibrates_on_uint8_frames(
    prune8, tiny_raw_onnx, media_dir
):
    from edgevid.calib.quantize import onnx_to_int8_static
    from edgevid.core.clips import folder_clips

    model, meta, _, tmp = prune8
    clips = folder_clips(media_dir, meta)  # the real clips: decoded, resized, cropped
    path = onnx_to_int8_static(tiny_raw_onnx, tmp / "raw-int8.onnx", clips)
    assert read_metadata(path).input_format == "uint8"
    result = verify_graph(path, torch_logits(model, clips, meta), clips)
    assert result.cosine > 0.98


# --- the command ---------------------------------------------------------------------------
def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgevid", *args], capture_output=True, text=True, timeout=300
    )


def assert_clean_error(r: subprocess.CompletedProcess, *fragments: str) -> None:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgevid: error:"), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow  # measured 25-90 s on the 2-core reference CPU
def test_cli_export_writes_verified_graphs_and_a_triton_repo(tiny_checkpoint, tmp_path):
    out, repo = tmp_path / "out", tmp_path / "repo"
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--fp16", "--int8", "dynamic"]
    triton = ["--triton", str(repo), "--batch", "1:2:4"]  # MAX is max_batch_size
    r = CliRunner().invoke(main, [*args, "--out", str(out), *triton])
    assert r.exit_code == 0, r.output
    configs = sorted(repo.glob("*/config.pbtxt"))
    assert len(configs) == 3
    for config in configs:
        assert "max_batch_size: 4\n" in config.read_text()
    names = sorted(p.name for p in out.iterdir())
    stems = ("tiny-prune8", "tiny-prune8-fp16", "tiny-prune8-int8-dynamic")
    assert names == sorted(f"{stem}{ext}" for stem in stems for ext in (".onnx", ".json"))
    for precision in ("fp32", "fp16", "int8-dynamic"):
        assert precision in r.output
    assert "FAIL" not in r.output and r.output.count(" ok") == 3
    assert sorted(p.name for p in repo.iterdir()) == [
        "tiny-prune8",
        "tiny-prune8-fp16",
        "tiny-prune8-int8-dynamic",
    ]


@pytest.mark.slow  # measured 25-90 s on the 2-core reference CPU
def test_cli_verification_failure_fails_the_export_and_writes_nothing(
    tiny_checkpoint, tmp_path, monkeypatch
):
    import dataclasses

    from edgevid.core.precision import PRECISIONS, Tolerance

    impossible = Tolerance(min_agreement=1.0, min_cosine=1.5)
    monkeypatch.setitem(
        PRECISIONS, "fp16", dataclasses.replace(PRECISIONS["fp16"], tolerance=impossible)
    )
    out = tmp_path / "out"
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--fp16", "--out", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "verification failed" in r.output
    assert "tiny-prune8-fp16.onnx: cosine similarity" in r.output
    assert not out.exists() or list(out.iterdir()) == []  # not even the FP32 graph that passed


@pytest.mark.slow  # a subprocess that imports torch: ~15 s
def test_cli_corrupt_checkpoint_is_one_clear_line(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_checkpoint.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "model.safetensors").write_bytes(b"not safetensors at all")
    out = tmp_path / "out"
    r = run("export", "--checkpoint", str(bad), "--out", str(out))
    assert_clean_error(r, "corrupt")
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        # these two import torch in the subprocess (~10 s each): full suite only
        pytest.param(["--variant", "prune4"], "--checkpoint", marks=pytest.mark.slow),
        pytest.param(["--variant", "nope"], "unknown variant", marks=pytest.mark.slow),
        ([], "exactly one of --variant"),
        (["--variant", "tiny-prune8", "--random-init", "--opset", "12"], "--opset"),
        (["--variant", "tiny-prune8", "--random-init", "--int8", "static"], "--calib-data"),
        (["--variant", "tiny-prune8", "--random-init", "--batch", "4:2:1"], "MIN <= OPT"),
    ],
)
def test_cli_bad_options_are_one_clear_line(args, fragment, tmp_path):
    out = tmp_path / "out"
    r = run("export", *args, "--out", str(out))
    assert_clean_error(r, fragment)
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_help_teaches():
    r = CliRunner().invoke(main, ["export", "--help"])
    assert r.exit_code == 0
    for word in ("--fp16", "--int8", "--calib-data", "--raw-input", "--triton", "Examples"):
        assert word in r.output


def test_sidecar_is_the_embedded_metadata(tiny_onnx):
    embedded = read_metadata(tiny_onnx)
    assert json.loads(sidecar_path(tiny_onnx).read_text()) == embedded.to_dict()


def test_stages_after_the_pytorch_export_never_import_torch():
    """FP16, INT8, verification, TensorRT and Triton run where torch is absent (a Jetson)."""
    modules = [
        "edgevid.core.onnx_file",
        "edgevid.export.fp16",
        "edgevid.export.verify",
        "edgevid.runtime.backends.tensorrt_build",
        "edgevid.export.triton",
        "edgevid.core.clips",
        "edgevid.calib.quantize",
    ]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
