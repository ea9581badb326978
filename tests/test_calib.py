"""INT8: class-balanced calibration clips, static Q/DQ graphs TensorRT can read, dynamic INT8."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from edgevid.calib.quantize import (  # noqa: E402
    QUANTIZED_OPS,
    onnx_to_int8_dynamic,
    onnx_to_int8_static,
)
from edgevid.core.clips import balanced_samples, dataset_clips, folder_clips  # noqa: E402
from edgevid.core.manifest import load_or_split  # noqa: E402
from edgevid.core.onnx_file import read_metadata  # noqa: E402
from edgevid.core.precision import CALIB_METHODS  # noqa: E402
from edgevid.errors import DataError, ExportError  # noqa: E402
from edgevid.export.verify import torch_logits, verify_graph  # noqa: E402
from edgevid.train.checkpoint import load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def model_and_graphs(tiny_checkpoint, tiny_onnx, tmp_path_factory):
    model, meta = load_checkpoint(tiny_checkpoint)
    return model, meta, tiny_onnx, tmp_path_factory.mktemp("calib")


@pytest.fixture(scope="module")
def test_clips(model_and_graphs, synth_root):
    _, meta, _, _ = model_and_graphs
    return dataset_clips(synth_root, meta, 16, split="test")


def test_calibration_clips_are_class_balanced(synth_root, model_and_graphs):
    manifest = load_or_split(synth_root)
    picked = balanced_samples(manifest, "train", 12, seed=0)
    counts = Counter(label for _, label in picked)
    assert len(picked) == 12 and set(counts) == set(range(len(manifest.classes)))
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len({p for p, _ in picked}) == 12  # no clip twice
    assert balanced_samples(manifest, "train", 12, seed=0) == picked  # seeded
    train = set(manifest.paths("train"))
    assert all(p in train for p, _ in picked)  # calibration never sees the test split

    _, meta, _, _ = model_and_graphs
    clips = dataset_clips(synth_root, meta, 10)
    s = meta.image_size
    assert clips.frames.shape == (10, meta.num_frames, s, s, 3) and clips.frames.dtype == np.uint8
    assert clips.record()["per_class"] == {c: 2 for c in manifest.classes}


def test_static_int8_is_a_symmetric_per_channel_qdq_graph_that_agrees(
    model_and_graphs, synth_root, test_clips
):
    model, meta, fp32, tmp = model_and_graphs
    calib = dataset_clips(synth_root, meta, 10, split="train")
    path = onnx_to_int8_static(fp32, tmp / "int8.onnx", calib, method="minmax")
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    nodes = list(graph.graph.node)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    dq = [n for n in nodes if n.op_type == "DequantizeLinear"]
    assert dq and any(n.op_type == "QuantizeLinear" for n in nodes)
    for n in dq:  # symmetric: every zero point is 0, and int8
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    assert any(inits[n.input[1]].size > 1 for n in dq)  # per-channel weight scales
    dq_out = {o for n in dq for o in n.output}
    consumers = {n.op_type for n in nodes if any(i in dq_out for i in n.input)}
    assert consumers <= set(QUANTIZED_OPS)  # Add, LayerNorm, Softmax stay float

    meta8 = read_metadata(path)
    assert meta8.precision == "int8-static"
    calib_record = meta8.extra["calibration"]
    assert calib_record["method"] == "minmax" and calib_record["clips"] == 10
    assert sum(calib_record["per_class"].values()) == 10

    result = verify_graph(path, torch_logits(model, test_clips, meta), test_clips)
    assert result.passed, result.reason
    assert result.cosine > 0.98 and result.agreement >= 0.85


@pytest.mark.parametrize("method", [m for m in CALIB_METHODS if m != "minmax"])
def test_other_calibration_methods(model_and_graphs, method):
    model, meta, fp32, tmp = model_and_graphs
    clips = folder_clips_or_random(meta)
    path = onnx_to_int8_static(fp32, tmp / f"{method}.onnx", clips, method=method)
    assert read_metadata(path).extra["calibration"]["method"] == method
    result = verify_graph(path, torch_logits(model, clips, meta), clips)
    assert result.cosine > 0.95


def folder_clips_or_random(meta):
    from edgevid.core.clips import ClipSet

    rng = np.random.default_rng(1)
    s = meta.image_size
    frames = rng.integers(0, 256, (4, meta.num_frames, s, s, 3), dtype=np.uint8)
    return ClipSet(frames, [None] * 4, ["random"] * 4)


def test_dynamic_int8_agrees_with_pytorch(model_and_graphs, test_clips):
    model, meta, fp32, tmp = model_and_graphs
    path = onnx_to_int8_dynamic(fp32, tmp / "dyn.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    assert read_metadata(path).extra["calibration"]["method"] == "dynamic"
    result = verify_graph(path, torch_logits(model, test_clips, meta), test_clips)
    assert result.passed, result.reason


def test_bad_inputs_are_clear_errors(model_and_graphs, tmp_path, synth_root):
    _, meta, fp32, _ = model_and_graphs
    clips = folder_clips_or_random(meta)
    with pytest.raises(ExportError, match="calibration method"):
        onnx_to_int8_static(fp32, tmp_path / "x.onnx", clips, method="magic")
    dyn = onnx_to_int8_dynamic(fp32, tmp_path / "dyn.onnx")
    with pytest.raises(ExportError, match="needs an fp32 graph"):
        onnx_to_int8_dynamic(dyn, tmp_path / "again.onnx")
    with pytest.raises(DataError, match="no videos"):
        folder_clips(tmp_path, meta)
    with pytest.raises(DataError, match="no split"):
        dataset_clips(synth_root, meta, 4, split="holdout")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn.json", "dyn.onnx"]
