"""Accuracy, per-class precision/recall/F1 and the confusion matrix of any model.

The predictor is a plain function ``predict_fn(graph input (B, ...) numpy) -> (B, C) logits
numpy``: a torch checkpoint (:func:`torch_predictor`) or any model file the runtime runs
(ONNX, TensorRT engine, OpenVINO IR, a Triton URI), through the runtime's backends.

    predict, meta = load_predictor("prune4-int8-static.onnx")    # or RUN/best, x.engine
    report = evaluate(predict, clip_batches(paths, targets, meta), meta.labels)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid._atomic import write_json
from edgevid.core.manifest import Manifest, scan_folder
from edgevid.core.meta import META_FILENAME, ModelMeta
from edgevid.errors import DataError, ModelError

PredictFn = Callable[[np.ndarray], np.ndarray]  # graph input (B, ...) -> (B, C) logits


@dataclass
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # clips of this class in the evaluated set


@dataclass
class EvalReport:
    labels: list[str]  # class names, index = logit position
    num_clips: int  # clips evaluated (decodable ones)
    top1: float  # accuracy
    top5: float | None  # top-5 accuracy, only when there are more than 5 classes
    loss: float  # mean cross-entropy of the logits
    per_class: list[ClassScore]
    confusion: list[list[int]]  # confusion[true][predicted]
    skipped: list[str] = field(default_factory=list)  # clips that could not be decoded
    partial: list[str] = field(default_factory=list)  # damaged clips, evaluated on what decoded

    @property
    def macro_f1(self) -> float:
        return float(np.mean([c.f1 for c in self.per_class]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"macro_f1": self.macro_f1}

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    def table(self) -> str:
        """Per-class scores as a plain-text table."""
        rows = [f"{'class':<24}{'precision':>10}{'recall':>8}{'f1':>8}{'clips':>7}"]
        for c in self.per_class:
            rows.append(
                f"{c.label:<24}{c.precision:>10.3f}{c.recall:>8.3f}{c.f1:>8.3f}{c.support:>7}"
            )
        top5 = f", top-5 {self.top5:.3f}" if self.top5 is not None else ""
        rows.append(f"top-1 {self.top1:.3f}{top5}, macro F1 {self.macro_f1:.3f}")
        rows.append(f"{self.num_clips} clips")
        return "\n".join(rows)


def report_from_logits(
    logits: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    skipped: list[str] | None = None,
    partial: list[str] | None = None,
) -> EvalReport:
    """Scores of (N, C) logits against (N,) integer targets."""
    c = len(labels)
    logits = np.asarray(logits, np.float64).reshape(-1, c)
    targets = np.asarray(targets, np.int64).reshape(-1)
    if len(logits) == 0:
        raise DataError("nothing to evaluate: no clip could be decoded")
    pred = logits.argmax(1)
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (targets, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros(c), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros(c), where=confusion.sum(1) > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(c), where=denom > 0)
    top5 = None
    if c > 5:
        top = np.argsort(-logits, 1)[:, :5]
        top5 = float((top == targets[:, None]).any(1).mean())
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return EvalReport(
        labels=list(labels),
        num_clips=len(targets),
        top1=float((pred == targets).mean()),
        top5=top5,
        loss=float(-logp[np.arange(len(targets)), targets].mean()),
        per_class=[
            ClassScore(labels[i], float(precision[i]), float(recall[i]), float(f1[i]), int(n))
            for i, n in enumerate(confusion.sum(1))
        ],
        confusion=confusion.tolist(),
        skipped=list(skipped or []),
        partial=list(partial or []),
    )


def evaluate(
    predict_fn: PredictFn,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    labels: list[str],
    skipped: list[str] | None = None,
    partial: list[str] | None = None,
) -> EvalReport:
    """Run ``predict_fn`` over ((B, T, 3, S, S), (B,)) batches and score the predictions;
    ``skipped`` and ``partial`` (filled by the batches as they decode) go into the report."""
    all_logits, all_targets = [], []
    for x, y in batches:
        all_logits.append(np.asarray(predict_fn(x)))
        all_targets.append(y)
    if not all_logits:
        raise DataError("nothing to evaluate: no clip could be decoded")
    return report_from_logits(
        np.concatenate(all_logits), np.concatenate(all_targets), labels, skipped, partial
    )


def torch_predictor(model, device: str = "cpu") -> PredictFn:
    """A torch model as a ``predict_fn`` (eval mode, no gradients)."""
    import torch

    model = model.to(device).eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(pixel_values=torch.from_numpy(x).to(device)).logits.float().cpu().numpy()

    return predict


def load_predictor(path: str | os.PathLike, device: str = "cpu") -> tuple[PredictFn, ModelMeta]:
    """A checkpoint folder (torch) or any model the runtime runs -> (predict_fn, metadata)."""
    path_ = Path(path)
    if "://" not in str(path) and not path_.exists():
        raise ModelError(f"{path}: no such model (a checkpoint folder or a model file)")
    if path_.is_dir() and (path_ / META_FILENAME).is_file():
        import torch

        from edgevid.train.checkpoint import load_checkpoint

        on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        model, meta = load_checkpoint(path_, device="cuda" if on_gpu else "cpu")
        return torch_predictor(model, "cuda" if on_gpu else "cpu"), meta
    from edgevid.runtime.classifier import Classifier

    clf = Classifier(path, device=device)
    return clf.backend.run, clf.meta


def score_model(
    model: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "test",
    *,
    batch_size: int = 8,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """``edgevid eval``: score a checkpoint or any model file on a split or a folder of clips.

    ``progress(clips_done, clips_total)`` is called after each batch."""
    from edgevid.core.clips import clip_batches

    predict, meta = load_predictor(model, device)
    paths, targets = labelled_clips(data, meta.labels, split)
    skipped: list[str] = []
    partial: list[str] = []
    done = 0

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal done
        for x, y in clip_batches(paths, targets, meta, batch_size, skipped, partial):
            done += len(y)
            if progress is not None:
                progress(done, len(paths))
            yield x, y

    return evaluate(predict, batches(), meta.labels, skipped, partial)


def labelled_clips(
    data: str | os.PathLike, labels: list[str], split: str = "test"
) -> tuple[list[Path], list[int]]:
    """(paths, targets) of a manifest split, or of a folder-per-class tree of any videos.

    ``data`` is a manifest (or a dataset folder holding ``manifest.json``) or, for real-world
    clips, a folder ``<ClassName>/*.mp4`` whose class names are among the model's labels.
    """
    data = Path(data)
    manifest = data if data.is_file() else data / "manifest.json"
    if manifest.is_file():
        m = Manifest.load(manifest, root=None if data.is_file() else data)
        if split not in m.splits:
            raise DataError(f"{manifest}: no split {split!r} (has {', '.join(m.splits)})")
        unknown = sorted(set(m.classes) - set(labels))
        if unknown:
            raise DataError(f"{manifest}: classes {unknown} are not among the model's labels")
        index = {name: labels.index(name) for name in m.classes}
        return m.paths(split), [index[m.classes[y]] for y in m.labels(split)]
    classes, items = scan_folder(data)
    unknown = sorted({classes[y] for _, y in items} - set(labels))
    if unknown:
        raise DataError(
            f"{data}: class folders {unknown} are not among the model's labels "
            f"({', '.join(labels)})"
        )
    return [p for p, _ in items], [labels.index(classes[y]) for _, y in items]
