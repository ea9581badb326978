"""FP32 ONNX -> INT8 ONNX with ONNX Runtime's quantizer: static Q/DQ or dynamic.

Static (``onnx_to_int8_static``): activation ranges come from calibration clips; the graph
gets QuantizeLinear/DequantizeLinear pairs in the form TensorRT's explicit quantization
reads: symmetric int8 activations and weights (zero point 0), per-channel weights, and
only MatMul/Gemm/Conv quantized: residual Adds, LayerNorm and Softmax stay float, where
INT8 costs accuracy and buys little. ONNX Runtime runs the same graph on a CPU, so its
accuracy is checked before any engine is built.

The CPU variant of the static graph (``int8-cpu``, the same quantizer): before calibration
each attention's packed QKV projection is split into Q, K and V projections with their own
head layout (``edgevid.calib.fuse``, ``qkv-split``), so OpenVINO runs each attention core as
one INT8 kernel and no Gathers or 5-D transposes sit between the INT8 projections (prune8
on OpenVINO: ~1.2x NNCF's INT8 and ~1.1x ``int8-static``, one interleaved run).

Dynamic (``onnx_to_int8_dynamic``): int8 weights, activations quantized per batch at run
time. No calibration; ONNX Runtime's fastest CPU path, not a TensorRT input. Its precision
row names the contrib-op fusions (``edgevid.calib.fuse``) applied first: each attention's
core as one ``MultiHeadAttention`` node with its Q/K/V projections as INT8 matmuls, and GELU
as one ``Gelu`` node.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.calib.fuse import CONTRIB, fuse_graph
from edgevid.core.artifact import input_name
from edgevid.core.clips import ClipSet, dataset_clips, graph_input
from edgevid.core.onnx_file import read_metadata, save_onnx
from edgevid.core.precision import get_calib_method, get_precision
from edgevid.errors import ExportError, require

QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")
DYNAMIC_OPS = ("MatMul", "Gemm")  # ConvInteger has no fast CPU kernel; the Conv stays float


def quantize(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    precision: str,
    *,
    calib_data: str | os.PathLike | None = None,
    method: str = "minmax",
    num_clips: int = 32,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The calibration stage as one call: FP32 graph ``src`` -> INT8 graph ``dst``.

    ``precision`` is an INT8 row of :data:`edgevid.core.precision.PRECISIONS`; a calibrated
    one decodes ``num_clips`` class-balanced clips of ``calib_data``'s train split first."""
    if precision not in QUANTIZERS:
        get_precision(precision, ExportError)  # an unknown name: the error lists the known
        raise ExportError(f"{precision} is not an INT8 precision ({', '.join(QUANTIZERS)})")
    if not get_precision(precision).calibrated:
        return QUANTIZERS[precision](src, dst)
    if calib_data is None:
        raise ExportError(f"{precision} needs calibration clips: --calib-data DATASET_ROOT")
    clips = dataset_clips(calib_data, read_metadata(src), num_clips, "train", progress=progress)
    log(f"calibrating on {len(clips)} clips of {calib_data} ({method})")
    record = clips.record(dataset=str(calib_data), split="train")
    return QUANTIZERS[precision](src, dst, clips, method=method, record=record)


class ClipReader:
    """ONNX Runtime CalibrationDataReader over prepared clips, one clip per batch."""

    def __init__(self, clips: ClipSet, meta, name: str) -> None:
        self._inputs = graph_input(clips.frames, meta)  # (N, T, 3, S, S) or (N, T, S, S, 3)
        self._name = name
        self._it: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for x in self._inputs:
            yield {self._name: x[None]}  # (1, ...)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()


def onnx_to_int8_static(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    clips: ClipSet,
    *,
    method: str = "minmax",
    record: dict[str, Any] | None = None,
    precision: str = "int8-static",
) -> Path:
    """Quantize the FP32 graph ``src`` to a Q/DQ INT8 graph at ``dst``, calibrated on ``clips``.

    ``record`` (which dataset, split, clips) is stored with the method in the metadata;
    ``precision``'s fusions are applied to the FP32 graph first.
    """
    q = require("onnxruntime.quantization", "export", "INT8 quantization")
    ort_method = getattr(q.CalibrationMethod, get_calib_method(method, ExportError).ort)
    if len(clips) == 0:
        raise ExportError("INT8 calibration needs at least one clip")
    meta = _fp32_meta(src)
    reader = ClipReader(clips, meta, input_name(meta))
    with tempfile.TemporaryDirectory(prefix="edgevid-calib-") as work:
        pre = Path(work) / "pre.onnx"
        fused, made = _fused(src, Path(work), get_precision(precision).fusions)
        _preprocess(fused, pre)
        out = Path(work) / "int8.onnx"
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
            q.quantize_static(
                str(pre),
                str(out),
                reader,
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True,
                activation_type=q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8,
                calibrate_method=ort_method,
                extra_options={
                    "ActivationSymmetric": True,  # zero point 0: what TensorRT requires
                    "WeightSymmetric": True,
                    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # per output channel
                    "CalibTensorRangeSymmetric": True,
                    # A Q/DQ pair per quantized input: a tensor that also feeds a residual
                    # Add or a LayerNorm is read by those unrounded (float), not from the DQ.
                    "DedicatedQDQPair": True,
                    # Q/DQ on inputs only, as TensorRT places them: a MatMul's output feeds
                    # Adds and reshapes that should see its float value.
                    "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
                },
            )
        calibration = {**(record or clips.record()), "method": method, "ops": list(QUANTIZED_OPS)}
        return _save(out, meta, precision, calibration | {"fusions": made}, dst)


def onnx_to_int8_dynamic(
    src: str | os.PathLike, dst: str | os.PathLike, fusions: tuple[str, ...] | None = None
) -> Path:
    """Quantize the FP32 graph ``src`` to dynamic INT8 (weights int8, activations at run time).

    ``fusions`` (default: the int8-dynamic row's) are applied to the FP32 graph first; the
    number of each made is recorded in the metadata."""
    q = require("onnxruntime.quantization", "export", "INT8 quantization")
    meta = _fp32_meta(src)
    names = get_precision("int8-dynamic").fusions if fusions is None else fusions
    with tempfile.TemporaryDirectory(prefix="edgevid-quant-") as work:
        pre = Path(work) / "pre.onnx"
        fused, made = _fused(src, Path(work), names)
        _preprocess(fused, pre)
        out = Path(work) / "int8.onnx"
        q.quantize_dynamic(
            str(pre),
            str(out),
            op_types_to_quantize=list(DYNAMIC_OPS),
            per_channel=False,  # per-tensor: the fast MatMulInteger path on x86
            weight_type=q.QuantType.QInt8,
        )
        calibration = {"method": "dynamic", "ops": list(DYNAMIC_OPS), "fusions": made}
        return _save(out, meta, "int8-dynamic", calibration, dst)


def _fp32_meta(src: str | os.PathLike):
    meta = read_metadata(src)
    if meta.precision != "fp32":
        raise ExportError(
            f"{src}: INT8 quantization needs an fp32 graph, this one is {meta.precision}"
        )
    return meta


def _fused(
    src: str | os.PathLike, work: Path, names: tuple[str, ...]
) -> tuple[Path, dict[str, int]]:
    """The graph to quantize: ``src`` with the fusions ``names`` applied (a scratch file in
    ``work``), or ``src`` itself when there are none; and how many of each were made."""
    if not names:
        return Path(src), {}
    fused = work / "fused.onnx"
    return fused, fuse_graph(src, fused, names)


def _preprocess(src: str | os.PathLike, dst: Path) -> None:
    """Shape inference + ONNX Runtime's basic graph optimisation, as the quantizer advises."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _save(src: Path, meta, precision: str, calibration: dict[str, Any], dst) -> Path:
    """The quantized graph ``src`` saved at ``dst`` with the FP32 graph's ``meta``, now
    ``precision``, and how it was calibrated."""
    onnx = require("onnx", "export", "INT8 quantization")
    model = onnx.load(str(src))
    # ONNX Runtime's optimizer declares every domain it knows (training, preview, nchwc...);
    # keep the ones the graph uses, so stricter parsers (TensorRT) see a plain ONNX graph.
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    # what decides which engine may run it: ONNX Runtime's own operators (edgevid.runtime.
    # backends.choice gives such a graph to ONNX Runtime without timing OpenVINO on it)
    contrib = sorted({n.op_type for n in model.graph.node if n.domain == CONTRIB})
    extra = {**meta.extra, "calibration": calibration | {"contrib_ops": contrib}}
    return save_onnx(model, meta.replace(precision=precision, extra=extra), dst)


QUANTIZERS: dict[str, Callable[..., Path]] = {  # INT8 precision -> its quantizer
    "int8-static": onnx_to_int8_static,
    "int8-dynamic": onnx_to_int8_dynamic,
    "int8-cpu": functools.partial(onnx_to_int8_static, precision="int8-cpu"),
}
