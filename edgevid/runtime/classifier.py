"""``Classifier(model).predict(frames)``: a model file in, class probabilities out.

    clf = Classifier("prune4.onnx")      # or .engine, an export folder, a checkpoint folder
    pred = clf.predict(frames)           # frames (N, H, W, 3) uint8 RGB, any N, any size
    pred = clf.predict("clip.mp4")       # or a path: T frames spread over the whole clip
    pred.label, pred.score, pred.top_k

The stages are separate so the streaming loop can time them: ``prepare`` (per frame:
resize short side + center crop), ``to_input`` (per clip: normalise, channels first; a
no-op cast for uint8-input graphs that normalise inside), ``run`` (the backend).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid.core.clips import graph_input
from edgevid.core.meta import ModelMeta
from edgevid.core.preprocess import prepare_clip, prepare_frame
from edgevid.core.sampling import uniform_indices
from edgevid.runtime.backends import Backend, load_backend
from edgevid.runtime.resolve import resolve_model
from edgevid.runtime.smoothing import Decision, LabelScore, decide, softmax
from edgevid.runtime.sources import read_clip


@dataclass(frozen=True)
class Prediction:
    probs: np.ndarray  # (C,) float32 class probabilities
    labels: list[str]  # class names, index = position in probs

    def decide(self, threshold: float = 0.0, top_k: int = 3) -> Decision:
        return decide(self.probs, self.labels, threshold, top_k)

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    @property
    def score(self) -> float:
        return float(np.max(self.probs))

    @property
    def top_k(self) -> list[LabelScore]:
        return self.decide(top_k=5).top_k


class Classifier:
    def __init__(
        self,
        model: str | os.PathLike | Backend,
        *,
        device: str = "auto",
        threads: int | None = None,
        precision: str | None = None,  # OpenVINO inference precision (auto, fp32, bf16, fp16)
    ) -> None:
        if not isinstance(model, Backend):
            model = load_backend(resolve_model(model), device, threads, precision)
        self.backend = model
        self.meta: ModelMeta = self.backend.meta

    @property
    def name(self) -> str:
        """The model's file name, as results report it."""
        return Path(str(getattr(self.backend, "path", self.backend.name))).name

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (S, S, 3) uint8: what the rolling buffer stores."""
        return prepare_frame(frame, self.meta.image_size)

    def to_input(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, S, S, 3) uint8 -> the graph's input: (B, T, 3, S, S) float32 normalised,
        or the uint8 clips themselves when the graph normalises inside."""
        return graph_input(clips, self.meta)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Graph input (B, ...) -> probabilities (B, C) float32."""
        return softmax(self.backend.run(x))

    def predict(self, frames: np.ndarray | str | os.PathLike) -> Prediction | list[Prediction]:
        """Classify one clip (N, H, W, 3) or a batch (B, N, H, W, 3) of uint8 RGB frames, or
        a trimmed clip given by path (video file, image folder, source URI).

        T frames are sampled uniformly from the N given (evaluation sampling), then
        prepared exactly as in training.
        """
        if isinstance(frames, str | os.PathLike):
            frames = read_clip(frames, self.meta.num_frames)  # (T, H, W, 3)
        frames = np.asarray(frames)
        single = frames.ndim == 4
        batch = frames[None] if single else frames  # (B, N, H, W, 3)
        if batch.ndim != 5 or batch.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) or (B, N, H, W, 3) frames, got {frames.shape}")
        idx = uniform_indices(batch.shape[1], self.meta.num_frames)
        clips = np.stack([prepare_clip(clip[idx], self.meta.image_size) for clip in batch])
        probs = self.run(self.to_input(clips))
        preds = [Prediction(p, self.labels) for p in probs]
        return preds[0] if single else preds

    def close(self) -> None:
        self.backend.close()
