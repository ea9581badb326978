"""The candidates of a plan: prune level x precision x backend x threads.

A backend is a row: how ``edgevid run`` opens a graph with it (``--device``, OpenVINO's
``--precision``), which graph precisions it runs, and whether this machine has it. The plan
measures each candidate through ``load_backend`` with exactly those settings, and prints
the same flags in the command it recommends: what was measured is what runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgevid.core.precision import EXPORTED, PRECISIONS
from edgevid.plan.search import Candidate

CPU_GRAPHS = ("fp32", "int8-static", "int8-cpu")  # graphs both CPU engines run as they are
# Left out on a CPU: FP16 graphs (a CPU runs them with casts around every op, slower than the
# FP32 graph; OpenVINO's own f16 hint is a GPU setting). int8-dynamic graphs hold ONNX
# Runtime contrib ops, which OpenVINO runs far slower (runtime/backends/choice.py).


def _has_openvino() -> bool:
    from edgevid.runtime.backends.choice import has_openvino

    return has_openvino()


def _has_bf16() -> bool:
    if not _has_openvino():
        return False
    from edgevid.runtime.backends.openvino import ov_cpu_info

    return "BF16" in ov_cpu_info().capabilities


def _has_gpu() -> bool:
    from edgevid.runtime.backends.choice import has_gpu_provider

    return has_gpu_provider()


@dataclass(frozen=True)
class BackendSpec:
    name: str  # the Candidate.backend value
    device: str  # `edgevid run --device`
    hint: str | None  # `edgevid run --precision` (OpenVINO's inference precision), or None
    precisions: tuple[str, ...]  # graph precisions it runs, in the precision table's order
    available: Callable[[], bool]  # whether this machine has it
    cpu: bool = True  # takes --threads

    def run_args(self, threads: int | None) -> list[str]:
        """The `edgevid run` flags that open a graph exactly as the plan measured it."""
        args = ["--device", self.device] + (["--precision", self.hint] if self.hint else [])
        return args + (["--threads", str(threads)] if threads and self.cpu else [])


BACKENDS: dict[str, BackendSpec] = {
    b.name: b
    for b in (
        BackendSpec("onnxruntime", "cpu", None, (*CPU_GRAPHS, "int8-dynamic"), lambda: True),
        BackendSpec("openvino-fp32", "openvino", "fp32", CPU_GRAPHS, _has_openvino),
        BackendSpec("openvino-bf16", "openvino", "bf16", CPU_GRAPHS, _has_bf16),
        BackendSpec("tensorrt", "tensorrt", None, ("fp32", "fp16", "int8-static"), _has_gpu,
                    cpu=False),
    )
}  # fmt: skip
PLAN_PRECISIONS = ("fp32", *EXPORTED)  # what --precision may name
QUICK_PRECISIONS = ("fp32", "int8-dynamic")  # --quick: no calibration
DEFAULT_PRECISIONS = ("fp32", "int8-dynamic", "int8-cpu")  # the CPU's usual contenders


def available_backends() -> list[str]:
    return [name for name, b in BACKENDS.items() if b.available()]


def candidates(
    drops: Sequence[int],
    precisions: Sequence[str],
    backends: Sequence[str],
    threads: Sequence[int | None],
) -> list[Candidate]:
    """Every combination a backend can run, in a stable order (level, precision, backend)."""
    order = [p for p in PRECISIONS if p in precisions]
    out = []
    for d in drops:
        for p in order:
            for b in backends:
                if p not in BACKENDS[b].precisions:
                    continue
                for t in threads if BACKENDS[b].cpu else (None,):
                    out.append(Candidate(d, p, b, t))
    return out
