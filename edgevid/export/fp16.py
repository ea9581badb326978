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

from edgevid.errors import ExportError, require
from edgevid.export.opset import DECOMPOSED_TAG
from edgevid.export.torch_to_onnx import OUTPUT_NAME, read_metadata, save_onnx

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
    record = {"fp32_ops": list(KEEP_FP32_OPS), "fp32_nodes": len(keep)}
    return save_onnx(
        half, meta.replace(precision="fp16", extra={**meta.extra, "fp16": record}), dst
    )
