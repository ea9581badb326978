"""The table of precisions and the table of calibration methods: every stage reads these.

A precision is a row: the export writes ``<variant><suffix>.onnx``, verification judges the
graph with its tolerance, the TensorRT builder sets its flags, OpenVINO compiles with its
hint, ``edgevid export`` needs calibration clips when it says so. A name that is not in
the table is an error wherever it appears (no fallback to FP32).

To add a precision, add a row; to add a calibration method, add a row to CALIB_METHODS.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgevid.errors import EdgevidError, MetadataError


@dataclass(frozen=True)
class Tolerance:
    """What counts as the same model: an exported graph against the PyTorch logits."""

    max_abs: float | None = None  # max |logit error| / max(1, max |reference logit|)
    min_agreement: float = 1.0  # fraction of clips whose top-1 class is unchanged
    min_cosine: float = 0.0  # mean cosine similarity of the logit vectors


@dataclass(frozen=True)
class Precision:
    name: str  # ModelMeta.precision and the CLI value: "fp32", "fp16", "int8-static", ...
    suffix: str  # file name: <variant><suffix>.onnx ("" for fp32)
    column: str  # results-table column: fp32 | fp16 | bf16 | int8
    tolerance: Tolerance  # verification against PyTorch (reduced precisions: decisions kept)
    trt_flags: tuple[str, ...] = ()  # trt.BuilderFlag names of a weakly typed build (< 10/11)
    trt_typed: bool = False  # the graph's tensor types are the precision (strongly typed build)
    trt_min: tuple[int, int] = (8, 5)  # oldest TensorRT that builds it
    dla: bool = False  # a Jetson DLA core runs it (FP16, INT8); others build for the GPU only
    openvino_hint: str = ""  # OpenVINO INFERENCE_PRECISION_HINT ("": not an OpenVINO setting)
    calibrated: bool = False  # needs calibration clips (--calib-data)
    exported: bool = True  # `edgevid export` writes a graph in it
    # graph rewrites applied before quantization (edgevid.calib.fuse.FUSIONS): fewer float ops
    # around the INT8 matmuls. A row with fusions is a CPU graph: TensorRT builds from others
    fusions: tuple[str, ...] = ()


_FP16 = Tolerance(min_agreement=0.95, min_cosine=0.999)  # values change, the decisions hold
# an FP32 graph executed as bf16 (OpenVINO's inference precision): 8-bit mantissas in the
# matmuls, FP32 accumulation; no calibration. Judged like FP16, a little tighter on cosine
_BF16 = Tolerance(min_agreement=0.95, min_cosine=0.9995)
_INT8 = Tolerance(min_agreement=0.85, min_cosine=0.98)
_FP16_FLAGS = ("FP16", "OBEY_PRECISION_CONSTRAINTS")  # with the FP32 islands pinned

PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "", "fp32", Tolerance(max_abs=1e-4, min_cosine=0.99999),
                  openvino_hint="f32"),
        Precision("fp16", "-fp16", "fp16", _FP16, _FP16_FLAGS, trt_typed=True, dla=True,
                  openvino_hint="f16"),
        Precision("bf16", "-bf16", "bf16", _BF16, trt_typed=True, trt_min=(10, 0),
                  openvino_hint="bf16", exported=False),
        Precision("int8-static", "-int8-static", "int8", _INT8, ("FP16", "INT8"), dla=True,
                  calibrated=True),
        Precision("int8-dynamic", "-int8-dynamic", "int8", _INT8,
                  fusions=("attention", "gelu")),
        Precision("int8-cpu", "-int8-cpu", "int8", _INT8, calibrated=True,
                  fusions=("qkv-split",)),
    )
}  # fmt: skip
EXPORTED = tuple(n for n, p in PRECISIONS.items() if p.exported and n != "fp32")  # beyond FP32
OPENVINO = tuple(n for n, p in PRECISIONS.items() if p.openvino_hint)  # inference hints
OPENVINO_CHOICES = ("auto", *OPENVINO)  # --precision: auto = bf16 where the CPU has it, else fp32


def get_precision(name: str, error: type[EdgevidError] = MetadataError) -> Precision:
    """The row for ``name``; an unknown precision raises ``error``."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise error(f"unknown precision {name!r}; edgevid knows {', '.join(PRECISIONS)}") from None


@dataclass(frozen=True)
class CalibMethod:
    name: str  # CLI value, recorded in the INT8 graph's metadata
    ort: str  # onnxruntime.quantization.CalibrationMethod member
    help: str  # one line for --help


CALIB_METHODS: dict[str, CalibMethod] = {
    m.name: m
    for m in (
        CalibMethod("minmax", "MinMax", "range of all activations seen"),
        CalibMethod("entropy", "Entropy", "range that keeps the KL divergence smallest"),
        CalibMethod("percentile", "Percentile", "range covering 99.999% of activations"),
    )
}


def get_calib_method(name: str, error: type[EdgevidError] = MetadataError) -> CalibMethod:
    """The row for ``name``; an unknown method raises ``error``."""
    try:
        return CALIB_METHODS[name]
    except KeyError:
        raise error(
            f"unknown calibration method {name!r}; choose {', '.join(CALIB_METHODS)}"
        ) from None
