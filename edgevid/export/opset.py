"""Bring an opset-18 graph down to opset 17 or 16 (TensorRT 8.5/8.6 on JetPack 5).

The dynamo exporter emits opset 18 (see ``torch_to_onnx``). Between 16 and 18 only a few
ops this project uses changed, and ``onnx.version_converter`` handles all of them but two:

- opset 18 ``ReduceMean`` carries ``noop_with_empty_axes``, an attribute older opsets do
  not know; at its default (0) it means nothing, so it is dropped before converting.
- ``LayerNormalization`` exists only from opset 17; TensorRT 8.5 cannot parse it. At
  opset 16 it is written out as mean / variance / normalise / scale / shift, the same
  ops TensorRT's own normalisation fusion matches. Those nodes are named
  ``<layernorm>/decomposed/<step>`` so the FP16 pass can keep them in FP32.
"""

from __future__ import annotations

import numpy as np

from edgevid.errors import ExportError, require

SUPPORTED_OPSETS = (16, 17, 18)
DEFAULT_OPSET = 17  # LayerNormalization as one op; 16 for TensorRT 8.5 (JetPack 5)
DECOMPOSED_TAG = "/decomposed/"  # in the names of nodes written out from a LayerNormalization


def convert_opset(model, opset: int):
    """Return ``model`` (an opset-18 onnx.ModelProto) converted to ``opset`` (16, 17 or 18)."""
    onnx = require("onnx", "export", "ONNX export")
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"opset {opset} is not supported; choose 17 (default), 16 (TensorRT 8.5, JetPack 5) "
            "or 18"
        )
    current = _default_opset(model)
    if current == opset:
        return model
    if opset < 17:
        decompose_layer_norm(model)
    _drop_default_noop_with_empty_axes(model)
    try:
        return onnx.version_converter.convert_version(model, opset)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"cannot convert the graph from opset {current} to {opset}: {first}"
        ) from e


def decompose_layer_norm(model) -> int:
    """Replace every LayerNormalization (last axis) by primitive ops, in place; returns count."""
    onnx = require("onnx", "export", "ONNX export")
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = list(graph.node)
    axes_as_input = _default_opset(model) >= 18  # ReduceMean took an attribute before 18
    count = 0
    del graph.node[:]
    for node in nodes:
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            graph.node.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("axis", -1) != -1 or len(node.output) > 1 and any(node.output[1:]):
            raise ExportError(f"cannot decompose LayerNormalization {node.name!r} (axis/outputs)")
        name = node.name or f"layernorm_{count}"
        p = f"{name}{DECOMPOSED_TAG}"
        x, scale = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        eps, axes = p + "eps", p + "axes"
        graph.initializer.append(
            numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), eps)
        )
        if axes_as_input:
            graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
        out = node.output[0]
        extra = [axes] if axes_as_input else []
        steps = [  # (op, inputs, output)        x: (..., C)
            ("ReduceMean", [x, *extra], p + "mean"),  # (..., 1)
            ("Sub", [x, p + "mean"], p + "centred"),
            ("Mul", [p + "centred", p + "centred"], p + "sq"),
            ("ReduceMean", [p + "sq", *extra], p + "var"),  # (..., 1)
            ("Add", [p + "var", eps], p + "var_eps"),
            ("Sqrt", [p + "var_eps"], p + "std"),
            ("Div", [p + "centred", p + "std"], p + "normed"),
            ("Mul", [p + "normed", scale], p + "scaled" if bias else out),
        ]
        if bias:
            steps.append(("Add", [p + "scaled", bias], out))
        for i, (op, inputs, output) in enumerate(steps):
            attrs = {"axes": [-1]} if op == "ReduceMean" and not axes_as_input else {}
            graph.node.append(helper.make_node(op, inputs, [output], name=f"{p}{i}_{op}", **attrs))
        count += 1
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(
            f"LayerNormalization decomposition is invalid: {str(e).splitlines()[0]}"
        ) from e
    return count


def _drop_default_noop_with_empty_axes(model) -> None:
    for node in model.graph.node:
        for attr in list(node.attribute):
            if attr.name == "noop_with_empty_axes" and attr.i == 0:
                node.attribute.remove(attr)


def _default_opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
