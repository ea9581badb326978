"""CPU graph fusions applied before INT8 quantization: fewer float ops around the matmuls.

TimeSformer's divided attention (a temporal and a spatial attention per layer) is exported as
a packed QKV projection and a dozen small ops per attention::

    x -> MatMul(Wqkv) -> Add(b) -> Reshape (B', N, 3, H, D) -> Transpose (3, B', H, N, D)
      -> Gather q, k, v -> q @ k^T -> Mul(scale) -> Softmax -> @ v
      -> Transpose (B', N, H, D) -> Reshape (B', N, H*D)

Both attentions of a layer are plain self-attention over a batch of sequences (frames of one
patch; patches of one frame), so nothing TimeSformer-specific is needed beyond the pattern.
A precision row's ``fusions`` name the rewrites made before its quantizer runs:

- ``attention`` (``int8-dynamic``): the Q, K, V projections as three MatMuls (INT8 after
  quantization) and the rest as one ``com.microsoft.MultiHeadAttention``, which adds the
  bias and lays out the heads itself: none of the reshapes, transposes, gathers and scale
  multiplies are left. ``gelu``: the written-out exact GELU as one ``com.microsoft.Gelu``.
  Contrib operators: ONNX Runtime only.
- ``qkv-split`` (``int8-cpu``): plain ONNX. Only the packed projection is split into Q, K
  and V projections, each with its own 4-D head layout; the core stays. The static quantizer
  makes its two matmuls INT8 too, and OpenVINO runs each core as one INT8 attention kernel
  with no Gathers or 5-D transposes between the INT8 projections.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevid.errors import ExportError, require

CONTRIB = "com.microsoft"


@dataclass(frozen=True)
class _Match:
    nodes: tuple[Any, ...]  # the nodes the Attention node replaces
    x: str  # (B', N, C) input of the QKV projection
    weight: str  # (C, 3 * C) packed QKV weights: the initializer's name
    weights: np.ndarray  # ... and its values, read once while matching
    bias: str  # (3 * C,) packed QKV bias
    biases: np.ndarray  # ... and its values
    layout: np.ndarray  # (5,) the packed projection's Reshape: (B', N, 3, H, D)
    out: str  # (B', N, C) attention output before the output projection
    heads: int
    scale: float


class _Graph:
    """Producers, consumers and constant values of an ONNX graph, for pattern matching."""

    def __init__(self, graph) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.init = {t.name: t for t in graph.initializer}
        self._np = numpy_helper

    def const(self, name: str) -> np.ndarray | None:
        t = self.init.get(name)
        if t is not None:
            return self._np.to_array(t)
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute:
            return self._np.to_array(node.attribute[0].t)
        return None

    def node(self, name: str, op: str):
        """The producer of ``name`` if it is an ``op`` node used by nothing else, else None."""
        n = self.producer.get(name)
        if n is None or n.op_type != op or len(self.consumers.get(name, ())) != 1:
            return None
        return n

    def consumer(self, name: str, op: str):
        """The one consumer of ``name`` if it is an ``op`` node, else None."""
        users = self.consumers.get(name, ())
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def attr(self, node, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default


def _scalar(g: _Graph, name: str) -> float | None:
    v = g.const(name)
    return float(v) if v is not None and v.size == 1 else None


def _match_attention(g: _Graph, softmax) -> _Match | None:
    """The divided-attention pattern ending in ``softmax``'s consumer chain, or None."""
    if g.attr(softmax, "axis", -1) not in (-1, 3):
        return None
    scaled = g.node(softmax.input[0], "Mul")
    if scaled is None:
        return None
    scores, scale = None, None
    for a, b in (scaled.input, reversed(scaled.input)):
        matmul, factor = g.node(a, "MatMul"), _scalar(g, b)
        if matmul is not None and factor is not None:
            scores, scale = matmul, factor
    if scores is None:
        return None
    q_gather = g.node(scores.input[0], "Gather")
    k_t = g.node(scores.input[1], "Transpose")
    av = g.consumer(softmax.output[0], "MatMul")
    if q_gather is None or k_t is None or av is None or av.input[0] != softmax.output[0]:
        return None
    if list(g.attr(k_t, "perm", [])) != [0, 1, 3, 2]:
        return None
    k_gather = g.node(k_t.input[0], "Gather")
    v_gather = g.node(av.input[1], "Gather")
    gathers = (q_gather, k_gather, v_gather)
    if None in gathers or len({n.input[0] for n in gathers}) != 1:
        return None
    indices = [_scalar(g, n.input[1]) for n in gathers]  # q, k, v of the packed axis 0
    if indices != [0, 1, 2] or any(g.attr(n, "axis", 0) != 0 for n in gathers):
        return None
    packed = gathers[0].input[0]
    if len(g.consumers.get(packed, ())) != 3:
        return None
    perm = g.producer.get(packed)
    if perm is None or perm.op_type != "Transpose" or g.attr(perm, "perm") != [2, 0, 3, 1, 4]:
        return None
    split = g.node(perm.input[0], "Reshape")
    shape5 = g.const(split.input[1]) if split is not None else None
    if shape5 is None or shape5.shape != (5,) or shape5[2] != 3 or min(shape5[3:]) <= 0:
        return None
    heads, head_size = int(shape5[3]), int(shape5[4])
    bias_add = g.node(split.input[0], "Add")
    if bias_add is None:
        return None
    proj = bias = bias_values = None
    for a, b in (bias_add.input, reversed(bias_add.input)):
        matmul, values = g.node(a, "MatMul"), g.const(b)
        if matmul is not None and values is not None:
            proj, bias, bias_values = matmul, b, values
    weight = g.const(proj.input[1]) if proj is not None else None
    hidden = heads * head_size
    if weight is None or weight.shape != (hidden, 3 * hidden) or bias_values.shape != (3 * hidden,):
        return None
    merge = g.consumer(av.output[0], "Transpose")
    if merge is None or list(g.attr(merge, "perm", [])) != [0, 2, 1, 3]:
        return None
    out = g.consumer(merge.output[0], "Reshape")
    shape3 = g.const(out.input[1]) if out is not None else None
    if shape3 is None or shape3.shape != (3,) or shape3[2] != hidden:
        return None
    nodes = (proj, bias_add, split, perm, *gathers, k_t, scores, scaled, softmax, av, merge, out)
    return _Match(
        nodes, proj.input[0], proj.input[1], weight, bias, bias_values, shape5, out.output[0],
        heads, scale,
    )  # fmt: skip


def _is(g: _Graph, name: str, value: float) -> bool:
    """``name`` is the scalar constant ``value`` (to float32 precision)."""
    c = _scalar(g, name)
    return c is not None and abs(c - value) <= 1e-6 * max(1.0, abs(value))


def _times(g: _Graph, node, value: float) -> str | None:
    """For a binary node with the scalar constant ``value`` as one input: the other input."""
    a, b = node.input
    return a if _is(g, b, value) else b if _is(g, a, value) else None


def _match_gelu(g: _Graph, div) -> tuple[tuple[Any, ...], str, str] | None:
    """x / sqrt(2) -> Erf -> + 1 -> * 0.5 -> * x (any operand order): (nodes, x, output)."""
    x = div.input[0]
    if not _is(g, div.input[1], float(np.float32(np.sqrt(2.0)))):
        return None
    erf = g.consumer(div.output[0], "Erf")
    one = g.consumer(erf.output[0], "Add") if erf is not None else None
    if one is None or _times(g, one, 1.0) != erf.output[0]:
        return None
    half = g.consumer(one.output[0], "Mul")
    if half is None or _times(g, half, 0.5) != one.output[0]:
        return None
    times_x = g.consumer(half.output[0], "Mul")
    if times_x is None or sorted(times_x.input) != sorted([x, half.output[0]]):
        return None
    return (div, erf, one, half, times_x), x, times_x.output[0]


def fuse_gelu(model) -> int:
    """Replace every exact (erf) GELU written out as five ops by ``com.microsoft.Gelu``: one
    pass over the MLP's widest activation instead of five; the number replaced."""
    from onnx import helper

    g = _Graph(model.graph)
    found = [m for n in model.graph.node if n.op_type == "Div" if (m := _match_gelu(g, n))]
    return _replace(
        model,
        [
            (nodes, [helper.make_node("Gelu", [x], [out], name=f"Gelu_{i}", domain=CONTRIB)])
            for i, (nodes, x, out) in enumerate(found)
        ],
        CONTRIB,
    )


def _qkv_projections(model, m: _Match, i: int, bias: bool) -> tuple[list[Any], list[str]]:
    """The packed projection of match ``m`` as three MatMuls (Q, K, V weight columns; the
    quantizer makes each an INT8 matmul), each followed by its bias Add if ``bias``: the
    nodes and their three (B', N, C) outputs."""
    from onnx import helper, numpy_helper

    biases = np.split(m.biases, 3) if bias else [None] * 3
    nodes, outs = [], []
    for p, w, b in zip("qkv", np.split(m.weights, 3, axis=1), biases, strict=True):
        weight, out = f"{m.weight}_{p}_{i}", f"{m.out}_{p}"
        model.graph.initializer.append(numpy_helper.from_array(w.copy(), weight))
        if b is None:
            nodes.append(helper.make_node("MatMul", [m.x, weight], [out], name=f"{out}_proj"))
        else:
            bias_name = f"{m.bias}_{p}_{i}"
            model.graph.initializer.append(numpy_helper.from_array(b.copy(), bias_name))
            nodes += [
                helper.make_node("MatMul", [m.x, weight], [f"{out}_mm"], name=f"{out}_proj"),
                helper.make_node("Add", [f"{out}_mm", bias_name], [out], name=f"{out}_bias"),
            ]
        outs.append(out)
    return nodes, outs


def _attentions(model) -> list[_Match]:
    g = _Graph(model.graph)
    return [m for n in model.graph.node if n.op_type == "Softmax" if (m := _match_attention(g, n))]


def fuse_attention(model) -> int:
    """Replace the core of every packed-QKV self-attention in ``model`` by one
    ``com.microsoft.MultiHeadAttention`` node; the number replaced.

    The packed projection becomes three MatMuls and the bias goes into the attention node,
    which adds it while it lays out the heads: the Reshape/Transpose/Gather/Mul/Transpose/
    Reshape chain is gone."""
    from onnx import helper

    replacements = []
    for i, m in enumerate(_attentions(model)):
        nodes, qkv = _qkv_projections(model, m, i, bias=False)
        core = helper.make_node(
            "MultiHeadAttention", [*qkv, m.bias], [m.out], f"MultiHeadAttention_{i}",
            domain=CONTRIB, num_heads=m.heads, scale=m.scale,
        )  # fmt: skip
        replacements.append((m.nodes, [*nodes, core]))
    return _replace(model, replacements, CONTRIB)


def fuse_qkv_split(model) -> int:
    """Split every packed-QKV projection in ``model`` into Q, K and V projections, each laid
    out as (B', H, N, D) by its own Reshape + Transpose; the number split.

    The 5-D reshape, the transpose of all three and the three Gathers are gone; the attention
    core (q·kᵀ, scale, Softmax, ·v) stays as it was, in plain ONNX. The static quantizer then
    makes the three projections and the core's two matmuls INT8, and OpenVINO runs each core
    as one INT8 attention kernel with the head transposes folded into it."""
    from onnx import helper, numpy_helper

    replacements = []
    for i, m in enumerate(_attentions(model)):
        nodes, qkv = _qkv_projections(model, m, i, bias=True)
        heads = f"{m.out}_heads_shape_{i}"  # (B', N, H, D): the packed shape without its 3
        model.graph.initializer.append(numpy_helper.from_array(np.delete(m.layout, 2), heads))
        for out, gather in zip(qkv, m.nodes[4:7], strict=True):  # the q, k, v Gathers
            nodes += [
                helper.make_node("Reshape", [out, heads], [f"{out}_heads"], name=f"{out}_split"),
                helper.make_node("Transpose", [f"{out}_heads"], [gather.output[0]],
                                 name=f"{out}_layout", perm=[0, 2, 1, 3]),
            ]  # fmt: skip
        replacements.append((m.nodes[:7], nodes))  # the projection through the Gathers
    return _replace(model, replacements)


def _replace(
    model, replacements: list[tuple[tuple[Any, ...], list[Any]]], domain: str | None = None
) -> int:
    """Swap each group of nodes for its new nodes, placed where the group's first node was
    (they read only what that node could); ``domain``: the operator set the new nodes need
    declared (None: the default one)."""
    from onnx import helper

    if not replacements:
        return 0
    drop = {id(n) for old, _ in replacements for n in old}
    at = {id(old[0]): new for old, new in replacements}
    nodes = []
    for n in model.graph.node:
        if id(n) in at:
            nodes.extend(at[id(n)])
        elif id(n) not in drop:
            nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused(model.graph)
    if domain is not None and not any(o.domain == domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(domain, 1))
    return len(replacements)


def _drop_unused(graph) -> None:
    """Remove initializers and value_info no node reads or writes any more."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    produced = {o for n in graph.node for o in n.output}
    for entries, names in ((graph.initializer, used), (graph.value_info, used | produced)):
        kept = [e for e in entries if e.name in names]
        del entries[:]
        entries.extend(kept)


FUSIONS: dict[str, Callable[[Any], int]] = {  # name (a precision row's fusions) -> fusion
    "attention": fuse_attention,
    "gelu": fuse_gelu,
    "qkv-split": fuse_qkv_split,
}


def fuse_graph(
    src: str | os.PathLike, dst: str | os.PathLike, names: tuple[str, ...]
) -> dict[str, int]:
    """Apply the fusions ``names`` in order to the graph ``src``, written to ``dst`` (a
    scratch file: no metadata handling); how many of each were made."""
    onnx = require("onnx", "export", "graph fusion")
    unknown = [n for n in names if n not in FUSIONS]
    if unknown:
        raise ExportError(f"unknown graph fusion {unknown[0]!r}; edgevid has {', '.join(FUSIONS)}")
    model = onnx.load(str(src))
    made = {name: FUSIONS[name](model) for name in names}
    onnx.save(model, str(dst))
    return made
