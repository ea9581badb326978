"""FP32 ONNX -> FP16 ONNX, with the numerically fragile ops kept in FP32.

FP16 transformers fail in known places: LayerNormalization's variance and Softmax's
exponent overflow or lose all precision in half, and a classifier whose logits are rounded
to FP16 flips near-ties. So the graph is converted to FP16 except those ops (and the nodes
of a LayerNormalization written out at opset 16) and the node that produces the logits;
inputs and outputs keep their FP32 (or uint8) types, so callers never change. On TensorRT
10 this graph builds with FP16 kernels where it says FP16; on TensorRT 11 (strongly typed)
the graph's types are the precision.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgevid.core.artifact import OUTPUT_NAME
from edgevid.core.onnx_file import read_metadata, save_onnx
from edgevid.errors import ExportError, require
from edgevid.export.opset import DECOMPOSED_TAG

KEEP_FP32_OPS = ("LayerNormalization", "Softmax")  # plus LayerNorms written out, plus logits


def fp32_nodes(onnx_model) -> list[str]:
    """Names of the nodes that stay FP32: decomposed LayerNorms and the logits producer."""
    names = [n.name for n in onnx_model.graph.node if DECOMPOSED_TAG in n.name]
    names += [n.name for n in onnx_model.graph.node if OUTPUT_NAME in n.output]
    return names


def onnx_to_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert the FP32 graph ``src`` to a mixed FP16 graph at ``dst`` (+ metadata sidecar)."""
    onnx = require("onnx", "export", "FP16 conversion")
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    meta = read_metadata(src)
    if meta.precision != "fp32":
        raise ExportError(
            f"{src}: FP16 conversion needs an fp32 graph, this one is {meta.precision}"
        )
    model = onnx.load(str(src))
    keep = fp32_nodes(model)
    try:
        half = convert_float_to_float16(
            model,
            keep_io_types=True,  # pixel_values and logits stay float32
            op_block_list=list(KEEP_FP32_OPS),
            node_block_list=keep,
        )
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"{src}: FP16 conversion failed ({e})") from e
    OnnxModel(half).topological_sort()  # the converter appends its Casts at the end
    folded = fold_cast_round_trips(half, keep)
    record = {"fp32_ops": list(KEEP_FP32_OPS), "fp32_nodes": len(keep), "casts_folded": folded}
    return save_onnx(
        half, meta.replace(precision="fp16", extra={**meta.extra, "fp16": record}), dst
    )


def fold_cast_round_trips(onnx_model, kept_nodes: list[str]) -> int:
    """Cast(Cast(x, FLOAT16), FLOAT) -> x, in place; returns how many were folded.

    The converter casts the output of every FP32-kept node to FP16 and, with
    ``keep_io_types``, back to FP32 for the graph output: the logits would be rounded to
    FP16 on the way out, and FP32 ops that feed each other (LayerNorm -> Softmax paths)
    would round-trip too. The second Cast becomes an Identity of the FP32 value; the first
    is dropped when nothing else reads it.
    """
    from onnx import TensorProto, helper

    graph = onnx_model.graph
    producer = {o: n for n in graph.node for o in n.output}

    def cast_to(node) -> int | None:
        if node.op_type != "Cast":
            return None
        return next(a.i for a in node.attribute if a.name == "to")

    kept = set(kept_nodes)  # names of the nodes the converter left in FP32
    folded = 0
    for i, node in enumerate(graph.node):
        inner = producer.get(node.input[0]) if node.input else None
        if (
            cast_to(node) == TensorProto.FLOAT
            and inner is not None
            and cast_to(inner) == TensorProto.FLOAT16
            and _is_float32(onnx_model, inner.input[0], producer, kept)
        ):
            graph.node[i].CopyFrom(
                helper.make_node("Identity", [inner.input[0]], list(node.output), name=node.name)
            )
            folded += 1
    _drop_dead_nodes(onnx_model)
    return folded


def _is_float32(onnx_model, name: str, producer: dict, kept: set[str]) -> bool:
    """Whether tensor ``name`` is FP32: produced by a FP32-kept node or a Cast to FLOAT."""
    from onnx import TensorProto

    node = producer.get(name)
    if node is None:
        return any(
            i.name == name and i.type.tensor_type.elem_type == TensorProto.FLOAT
            for i in onnx_model.graph.input
        )
    if node.op_type == "Cast":
        return any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute)
    return node.op_type in KEEP_FP32_OPS or node.name in kept


def _drop_dead_nodes(onnx_model) -> None:
    """Remove nodes no graph output depends on (the graph must be topologically sorted)."""
    graph = onnx_model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(keep))
