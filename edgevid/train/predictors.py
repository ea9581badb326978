"""Model files -> ``predict_fn`` for :func:`edgevid.train.evaluate.evaluate` (a registry).

    predict_fn, meta = load_predictor("runs/a/best")       # torch checkpoint folder
    predict_fn, meta = load_predictor("prune4.onnx")       # ONNX Runtime session

Other backends (TensorRT engines, the runtime's session wrappers) register themselves with
:func:`register_predictor`; ``edgevid eval`` then accepts their files unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgevid.core.artifact import read_meta
from edgevid.core.meta import META_FILENAME, ModelMeta
from edgevid.errors import ModelError, require
from edgevid.train.evaluate import PredictFn

Loader = Callable[[Path, str], tuple[PredictFn, ModelMeta]]  # (path, device) -> (fn, meta)
_PREDICTORS: list[tuple[str, Callable[[Path], bool], Loader]] = []


def register_predictor(name: str, matches: Callable[[Path], bool], loader: Loader) -> None:
    """Add a backend; the most recently registered one that matches a path wins."""
    _PREDICTORS.insert(0, (name, matches, loader))


def load_predictor(path: str | os.PathLike, device: str = "cpu") -> tuple[PredictFn, ModelMeta]:
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model (a checkpoint folder or a model file)")
    for _, matches, loader in _PREDICTORS:
        if matches(path):
            return loader(path, device)
    kinds = ", ".join(name for name, _, _ in _PREDICTORS)
    raise ModelError(f"{path}: not a model edgevid can evaluate (supported: {kinds})")


def _torch_checkpoint(path: Path, device: str) -> tuple[PredictFn, ModelMeta]:
    from edgevid.train.checkpoint import load_checkpoint
    from edgevid.train.evaluate import torch_predictor

    model, meta = load_checkpoint(path, device=device)
    return torch_predictor(model, device), meta


def _onnx_file(path: Path, device: str) -> tuple[PredictFn, ModelMeta]:
    ort = require("onnxruntime", "export", "evaluating ONNX models")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device != "cpu" else None
    try:
        session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__})") from e
    meta = read_meta(path, session.get_modelmeta().custom_metadata_map)
    name = session.get_inputs()[0].name
    mean = np.asarray(meta.mean, np.float32)[:, None, None]
    std = np.asarray(meta.std, np.float32)[:, None, None]

    def predict(x: np.ndarray) -> np.ndarray:  # (B, T, 3, S, S) float32 normalised
        if meta.input_format == "uint8":  # the graph normalises itself: give it the frames
            frames = np.clip(np.rint((x * std + mean) * 255), 0, 255).astype(np.uint8)
            x = np.ascontiguousarray(frames.transpose(0, 1, 3, 4, 2))  # (B, T, S, S, 3)
        return session.run(None, {name: x})[0]

    return predict, meta


register_predictor(
    "ONNX file (.onnx)", lambda p: p.is_file() and p.suffix.lower() == ".onnx", _onnx_file
)
register_predictor(
    "checkpoint folder", lambda p: p.is_dir() and (p / META_FILENAME).is_file(), _torch_checkpoint
)
