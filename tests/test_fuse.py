"""CPU graph fusions before INT8: the divided attention as MultiHeadAttention or with its packed
QKV projection split, GELU as Gelu."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("torch")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from edgevid.calib.fuse import FUSIONS, fuse_graph  # noqa: E402
from edgevid.calib.quantize import QUANTIZERS, onnx_to_int8_dynamic  # noqa: E402
from edgevid.core.clips import dataset_clips, graph_input  # noqa: E402
from edgevid.core.onnx_file import read_metadata  # noqa: E402
from edgevid.core.precision import get_precision  # noqa: E402
from edgevid.errors import ExportError  # noqa: E402
from edgevid.export.verify import compare, torch_logits, verify_graph  # noqa: E402
from edgevid.train.checkpoint import load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def clips(tiny_onnx, synth_root):
    return dataset_clips(synth_root, read_metadata(tiny_onnx), 8, split="test")


def ort_logits(path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_fused_fp32_graph_computes_the_same_logits(tiny_onnx, clips, tmp_path):
    layers = 4  # tiny-prune8: two attentions (temporal, spatial) and one MLP per layer
    made = fuse_graph(tiny_onnx, tmp_path / "fused.onnx", ("attention", "gelu"))
    assert made == {"attention": 2 * layers, "gelu": layers}
    before, after = ops(tiny_onnx), ops(tmp_path / "fused.onnx")
    assert after["MultiHeadAttention"] == 2 * layers and after["Gelu"] == layers
    assert after["Softmax"] == after["Erf"] == 0 and before["Softmax"] == 2 * layers
    # per attention the two core matmuls went into the node, the packed QKV projection is
    # three matmuls now (Q, K, V)
    assert after["MatMul"] == before["MatMul"]
    onnx.checker.check_model(onnx.load(str(tmp_path / "fused.onnx")))
    x = graph_input(clips.frames, read_metadata(tiny_onnx))
    ref, got = ort_logits(tiny_onnx, x), ort_logits(tmp_path / "fused.onnx", x)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)


def test_dynamic_int8_graph_is_fused_and_agrees_with_pytorch(
    tiny_checkpoint, tiny_onnx, clips, tmp_path
):
    assert get_precision("int8-dynamic").fusions == ("attention", "gelu")
    fused = onnx_to_int8_dynamic(tiny_onnx, tmp_path / "fused.onnx")
    plain = onnx_to_int8_dynamic(tiny_onnx, tmp_path / "plain.onnx", fusions=())
    assert ops(fused)["MultiHeadAttention"] == 8 and ops(fused)["Gelu"] == 4
    assert ops(plain)["MultiHeadAttention"] == 0 and ops(plain)["Erf"] == 4
    assert read_metadata(fused).extra["calibration"]["fusions"] == {"attention": 8, "gelu": 4}
    assert read_metadata(plain).extra["calibration"]["fusions"] == {}
    # the projections feeding the attention are INT8 matmuls, not float
    assert ops(fused)["MatMulInteger"] == ops(plain)["MatMulInteger"] + 2 * 8
    model, meta = load_checkpoint(tiny_checkpoint)
    reference = torch_logits(model, clips, meta)
    result = verify_graph(fused, reference, clips)
    assert result.passed, result.reason
    x = graph_input(clips.frames, meta)
    # the fused graph is as close to PyTorch as the plain one
    ours = compare(reference, ort_logits(fused, x))
    theirs = compare(reference, ort_logits(plain, x))
    assert ours["cosine"] >= theirs["cosine"] - 1e-4
    assert ours["agreement"] >= theirs["agreement"]


def test_qkv_split_fusion_removes_the_packed_layout_and_computes_the_same(
    tiny_onnx, clips, tmp_path
):
    layers = 4
    fused = tmp_path / "fused.onnx"
    assert fuse_graph(tiny_onnx, fused, ("qkv-split",)) == {"qkv-split": 2 * layers}
    before, after = ops(tiny_onnx), ops(fused)
    model = onnx.load(str(fused))
    assert model.opset_import == onnx.load(str(tiny_onnx)).opset_import  # plain ONNX, as it was
    # per attention: the packed projection is three, its 5-D layout and q/k/v Gathers are gone,
    # the core is untouched
    assert after["MatMul"] == before["MatMul"] + 2 * 2 * layers
    assert before["Gather"] - after["Gather"] == 3 * 2 * layers
    assert after["Softmax"] == before["Softmax"] == 2 * layers
    perms = [
        list(a.ints) for n in model.graph.node if n.op_type == "Transpose" for a in n.attribute
    ]
    assert [2, 0, 3, 1, 4] not in perms and perms.count([0, 2, 1, 3]) >= 3 * 2 * layers
    onnx.checker.check_model(model)
    x = graph_input(clips.frames, read_metadata(tiny_onnx))
    ref = ort_logits(tiny_onnx, x)
    np.testing.assert_allclose(ort_logits(fused, x), ref, atol=1e-5, rtol=1e-4)


def test_int8_cpu_graph_is_calibrated_fused_and_agrees_with_pytorch(
    tiny_checkpoint, tiny_onnx, synth_root, clips, tmp_path
):
    calib = dataset_clips(synth_root, read_metadata(tiny_onnx), 8)
    graph = QUANTIZERS["int8-cpu"](tiny_onnx, tmp_path / "cpu.onnx", calib)
    meta = read_metadata(graph)
    assert meta.precision == "int8-cpu"
    record = meta.extra["calibration"]
    assert record["fusions"] == {"qkv-split": 8} and record["contrib_ops"] == []
    # every MatMul is INT8, the split Q/K/V projections and the attention core's two included:
    # each reads both its inputs from a DequantizeLinear
    model = onnx.load(str(graph))
    producers = {o: n for n in model.graph.node for o in n.output}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert sum("_proj" in n.name for n in matmuls) == 3 * 8
    assert all(producers[i].op_type == "DequantizeLinear" for n in matmuls for i in n.input)
    model_, meta_ = load_checkpoint(tiny_checkpoint)
    result = verify_graph(graph, torch_logits(model_, clips, meta_), clips)
    assert result.passed, result.reason


def test_a_graph_without_the_patterns_is_left_alone(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    # softmax(x @ W) and x * erf(x): the near misses of both patterns
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["s"]),
        helper.make_node("Mul", ["s", "half"], ["m"]),
        helper.make_node("Softmax", ["m"], ["p"], axis=-1),
        helper.make_node("Erf", ["p"], ["e"]),
        helper.make_node("Mul", ["p", "e"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [w, half],
    )
    src = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    assert fuse_graph(src, tmp_path / "out.onnx", tuple(FUSIONS)) == dict.fromkeys(FUSIONS, 0)
    assert ops(tmp_path / "out.onnx") == ops(src)
    with pytest.raises(ExportError, match="unknown graph fusion 'magic'"):
        fuse_graph(src, tmp_path / "x.onnx", ("magic",))
