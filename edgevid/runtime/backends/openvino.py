"""OpenVINO backend (extra ``openvino``, no torch): edgevid's ``.onnx`` graphs and OpenVINO IR.

The CPU plugin runs a graph's float work at the precision its *inference precision hint*
says. edgevid always sets that hint itself and records it (``backend.precision``,
``backend.name``): by default bf16 on a CPU whose ``OPTIMIZATION_CAPABILITIES`` list BF16
(AVX-512 BF16 or AMX), else f32. That is edgevid's calibration-free fast path: an FP32
graph executed as bf16, no calibration set, verified like the other precisions
(the bf16 row of ``edgevid.core.precision.PRECISIONS``). ``precision="fp32"`` keeps full FP32;
``precision="bf16"`` on a CPU without bf16 is refused, not silently run in f32.

    backend = OpenVinoBackend("prune8.onnx", threads=2)               # bf16 where supported
    backend = OpenVinoBackend("prune8.onnx", precision="fp32")       # exact FP32
    backend = OpenVinoBackend("prune8-bf16.xml")                     # IR from export --openvino

Metadata: ONNX ``metadata_props["edgevid"]`` (OpenVINO exposes it as
``rt_info["framework"]["edgevid"]``), the ``edgevid`` rt_info entry of an IR, or the sidecar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgevid.core.artifact import check_io, read_meta
from edgevid.core.precision import OPENVINO, OPENVINO_CHOICES
from edgevid.core.precision import PRECISIONS as PRECISIONS_TABLE
from edgevid.errors import ModelError, require
from edgevid.runtime.backends.base import Backend

ov = require("openvino", "openvino", "the OpenVINO backend")

# --precision value -> (INFERENCE_PRECISION_HINT, capability the CPU must list for it)
HINTS = {name: (PRECISIONS_TABLE[name].openvino_hint, name.upper()) for name in OPENVINO}
META_RT_KEY = "edgevid"  # rt_info key of the metadata JSON in an IR written by edgevid


@dataclass(frozen=True)
class CpuInfo:
    name: str  # FULL_DEVICE_NAME
    capabilities: tuple[str, ...]  # OPTIMIZATION_CAPABILITIES, e.g. ("BF16", "FP32", "INT8")


def ov_cpu_info() -> CpuInfo:
    return cpu_info(ov.Core())


def cpu_info(core: ov.Core) -> CpuInfo:
    return CpuInfo(
        name=str(core.get_property("CPU", "FULL_DEVICE_NAME")),
        capabilities=tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
    )


def resolve_precision(precision: str | None, cpu: CpuInfo) -> str:
    """The precision the CPU plugin is told to run at: ``auto`` resolved, a forced one checked."""
    precision = precision or "auto"
    if precision == "auto":
        return "bf16" if "BF16" in cpu.capabilities else "fp32"
    if precision not in HINTS:
        raise ModelError(
            f"--precision {precision!r} is not an OpenVINO inference precision; "
            f"choose from {', '.join(OPENVINO_CHOICES)}"
        )
    need = HINTS[precision][1]
    if need not in cpu.capabilities:
        raise ModelError(
            f"--precision {precision}: this CPU ({cpu.name}) cannot run {precision} "
            f"(OpenVINO OPTIMIZATION_CAPABILITIES: {', '.join(cpu.capabilities)}); "
            "use --precision fp32 or auto"
        )
    return precision


def _embedded_meta(model: ov.Model) -> dict[str, str] | None:
    """edgevid's metadata JSON inside an ONNX (metadata_props) or an IR (rt_info)."""
    for key in (["framework", META_RT_KEY], [META_RT_KEY]):
        if model.has_rt_info(key):
            return {META_RT_KEY: model.get_rt_info(key).astype(str)}
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


class OpenVinoBackend(Backend):
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "auto",
        threads: int | None = None,
        precision: str | None = None,
    ):
        super().__init__(path)
        core = ov.Core()
        self.cpu = cpu_info(core)
        self.precision = resolve_precision(precision, self.cpu)
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as e:
            raise ModelError(f"{self.path}: OpenVINO cannot read it ({_first_line(e)})") from e
        self.meta = read_meta(self.path, _embedded_meta(model))
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise ModelError(f"{self.path}: expected one input and a logits output")
        inp, out = model.inputs[0], model.outputs[0]
        in_shape = [d.get_length() if d.is_static else None for d in inp.get_partial_shape()]
        out_shape = [d.get_length() if d.is_static else None for d in out.get_partial_shape()]
        check_io(self.path, self.meta, inp.get_any_name(), in_shape, out_shape)
        self.input_dtype = np.uint8 if inp.get_element_type() == ov.Type.u8 else np.float32
        self.max_batch = in_shape[0] if in_shape and in_shape[0] else None
        config = {
            "INFERENCE_PRECISION_HINT": HINTS[self.precision][0],  # always explicit
            "PERFORMANCE_HINT": "LATENCY",  # one clip at a time, all cores on it
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as e:
            raise ModelError(f"{self.path}: OpenVINO cannot compile it ({_first_line(e)})") from e
        self.request = self.compiled.create_infer_request()
        self.name = f"openvino[CPU,{self.precision}]"

    def _run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        try:
            self.request.infer({0: x}, share_inputs=True)
        except RuntimeError as e:
            raise ModelError(f"{self.path}: inference failed ({_first_line(e)})") from e
        return self.request.get_output_tensor(0).data.copy()  # (B, C)

    def close(self) -> None:
        self.request = self.compiled = None  # type: ignore[assignment]


BACKEND = OpenVinoBackend
