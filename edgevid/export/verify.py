"""Prove an exported graph computes what the PyTorch model computes, on real clips.

    reference = torch_logits(model, clips, meta)                 # PyTorch, once
    result = verify_graph("prune4-fp16.onnx", reference, clips)   # ONNX Runtime
    print(format_table([result])); require_pass([result])

Each graph is compared with the PyTorch logits on the same prepared clips: max and mean
absolute logit error, mean cosine similarity, top-1 agreement, and accuracy when the clips
are labelled (the test split of a dataset). What counts as a pass depends on the precision:
FP32 must match to ~1e-4 of the logit scale; FP16 and INT8 change the numbers by design, so
they are judged by whether they change the *decisions* (top-1 agreement) and by cosine.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevid.core.clips import ClipSet, graph_input
from edgevid.core.meta import ModelMeta
from edgevid.core.precision import Tolerance, get_precision
from edgevid.errors import ExportError
from edgevid.runtime.backends.base import Backend


@dataclass
class Verification:
    model: str  # file name of the graph
    precision: str  # from its metadata
    clips: int  # how many clips were compared
    max_abs: float  # max |onnx - torch| over all logits
    mean_abs: float  # mean |onnx - torch|
    cosine: float  # mean cosine similarity per clip
    agreement: float  # top-1 agreement with PyTorch
    accuracy: float | None  # top-1 accuracy of the graph on labelled clips
    reference_accuracy: float | None  # the same for PyTorch
    passed: bool
    reason: str  # why it failed ("" when it passed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_logits(model, clips: ClipSet, meta: ModelMeta, batch_size: int = 8) -> np.ndarray:
    """PyTorch logits (N, C) for prepared clips, fed exactly as the float graph is."""
    from edgevid.train.evaluate import torch_predictor

    predict = torch_predictor(model)
    x = graph_input(clips.frames, meta.replace(input_format="float"))  # (N, T, 3, S, S)
    return np.concatenate([predict(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def model_logits(
    path: str | os.PathLike,
    clips: ClipSet,
    device: str = "cpu",
    precision: str | None = None,
    batch_size: int = 8,
) -> tuple[np.ndarray, Backend]:
    """Logits (N, C) of any model file on prepared clips, through the runtime's Classifier
    and backends (``device`` "cpu": ONNX Runtime; "openvino"; "tensorrt" ...)."""
    from edgevid.runtime.classifier import Classifier

    clf = Classifier(path, device=device, precision=precision)
    try:
        x = clf.to_input(clips.frames)  # (N, T, 3, S, S) float32 | (N, T, S, S, 3) uint8
        out = [clf.backend.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        clf.close()
    return np.concatenate(out).astype(np.float32), clf.backend


def compare(reference: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Error statistics of ``logits`` against ``reference``, both (N, C)."""
    diff = np.abs(logits - reference)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(logits, axis=1)
    cosine = np.sum(reference * logits, axis=1) / np.maximum(norms, 1e-12)
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "cosine": float(cosine.mean()),
        "agreement": float(np.mean(reference.argmax(1) == logits.argmax(1))),
        "scale": float(max(1.0, np.abs(reference).max())),
    }


def accuracy(logits: np.ndarray, clips: ClipSet, meta: ModelMeta) -> float | None:
    """Top-1 accuracy, when the clips are labelled with the model's own classes."""
    if not clips.labels or any(label is None for label in clips.labels):
        return None
    if clips.classes != meta.labels:
        return None  # a dataset over other classes: agreement still counts, accuracy cannot
    return float(np.mean(logits.argmax(1) == np.asarray(clips.labels)))


def judge(stats: dict[str, float], tolerance: Tolerance) -> str:
    """The reason a comparison fails ``tolerance``, or "" when it passes."""
    if tolerance.max_abs is not None and stats["max_abs"] > tolerance.max_abs * stats["scale"]:
        limit = tolerance.max_abs * stats["scale"]
        return f"max logit error {stats['max_abs']:.2e} > {limit:.1e}"
    if stats["agreement"] < tolerance.min_agreement:
        return f"top-1 agreement {stats['agreement']:.1%} < {tolerance.min_agreement:.0%}"
    if stats["cosine"] < tolerance.min_cosine:
        return f"cosine similarity {stats['cosine']:.5f} < {tolerance.min_cosine}"
    return ""


def verify_openvino(
    path: str | os.PathLike, reference: np.ndarray, clips: ClipSet, precision: str | None = None
) -> Verification:
    """Verify a graph or IR as the OpenVINO backend runs it (bf16 where the CPU has it):
    an FP32 graph run at bf16 is judged by the bf16 tolerance, an INT8 one by its own."""
    logits, backend = model_logits(path, clips, "openvino", precision)
    meta, ran_at = backend.meta, backend.precision
    key = "bf16" if ran_at == "bf16" and meta.precision in ("fp32", "fp16") else meta.precision
    return _verification(path, meta, f"{meta.precision}@ov-{ran_at}", logits, reference, clips,
                         get_precision(key).tolerance)  # fmt: skip


def verify_graph(
    path: str | os.PathLike,
    reference: np.ndarray,
    clips: ClipSet,
    tolerance: Tolerance | None = None,
) -> Verification:
    """Run the model at ``path`` (ONNX Runtime for a graph, the runtime's backend for any
    other model file) on ``clips`` and compare with the PyTorch ``reference``."""
    logits, backend = model_logits(path, clips)
    meta = backend.meta
    tolerance = tolerance or get_precision(meta.precision).tolerance
    return _verification(path, meta, meta.precision, logits, reference, clips, tolerance)


def _verification(
    path: str | os.PathLike,
    meta: ModelMeta,
    precision: str,
    logits: np.ndarray,
    reference: np.ndarray,
    clips: ClipSet,
    tolerance: Tolerance,
) -> Verification:
    stats = compare(reference, logits)
    reason = judge(stats, tolerance)
    del stats["scale"]  # the unit of the tolerance, not a result
    return Verification(
        model=Path(path).name,
        precision=precision,
        clips=len(clips),
        **stats,  # max_abs, mean_abs, cosine, agreement
        accuracy=accuracy(logits, clips, meta),
        reference_accuracy=accuracy(reference, clips, meta),
        passed=not reason,
        reason=reason,
    )


def require_pass(results: list[Verification]) -> None:
    """Raise ExportError naming every graph that failed its tolerance."""
    failed = [f"{r.model}: {r.reason}" for r in results if not r.passed]
    if failed:
        raise ExportError("verification failed: " + "; ".join(failed))


def format_table(results: list[Verification]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    w = max([34, *(len(r.model) + 2 for r in results)])  # the model column fits every name
    lines = [
        f"{'model':<{w}}{'precision':<14}{'clips':>6}{'max err':>10}{'mean err':>10}"
        f"{'cosine':>10}{'top-1 agr':>11}{'acc':>8}{'torch acc':>11}  result"
    ]
    for r in results:
        lines.append(
            f"{r.model:<{w}}{r.precision:<14}{r.clips:>6}{r.max_abs:>10.2e}{r.mean_abs:>10.2e}"
            f"{r.cosine:>10.6f}{r.agreement:>11.1%}{pct(r.accuracy):>8}"
            f"{pct(r.reference_accuracy):>11}  {'ok' if r.passed else 'FAIL: ' + r.reason}"
        )
    return "\n".join(lines)
