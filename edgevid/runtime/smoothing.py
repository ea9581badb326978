"""Class probabilities over successive windows: smoothing, a confidence threshold, top-k.

One inference sees ~1 second of video; consecutive windows overlap, so their
probabilities are averaged to steady the label shown to a user:

    ema:A    s = A * p + (1 - A) * s_prev      (A in (0, 1]: weight of the newest window)
    mean:N   the mean of the last N windows
    none     the newest window alone

A label whose (smoothed) probability is below the threshold is reported as "uncertain".
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from edgevid.errors import EdgevidError

UNCERTAIN = "uncertain"


class Smoother:
    """Base class: __call__(probs (C,)) -> smoothed probs (C,). One instance per stream."""

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return probs

    def reset(self) -> None:
        pass


class EMA(Smoother):
    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise EdgevidError(f"--smooth ema:A needs 0 < A <= 1, got {alpha}")
        self.alpha, self._state = alpha, None

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        p = np.asarray(probs, np.float64)
        self._state = p if self._state is None else self.alpha * p + (1 - self.alpha) * self._state
        return self._state.astype(np.float32)

    def reset(self) -> None:
        self._state = None


class Mean(Smoother):
    def __init__(self, window: int) -> None:
        if window < 1:
            raise EdgevidError(f"--smooth mean:N needs N >= 1, got {window}")
        self._last: collections.deque = collections.deque(maxlen=window)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        self._last.append(np.asarray(probs, np.float64))
        return np.mean(self._last, axis=0).astype(np.float32)

    def reset(self) -> None:
        self._last.clear()


_SMOOTHERS: dict[str, Callable[[str], Smoother]] = {
    "none": lambda arg: Smoother(),
    "ema": lambda arg: EMA(float(arg or 0.6)),
    "mean": lambda arg: Mean(int(arg or 4)),
}


def make_smoother(spec: str) -> Smoother:
    """'ema:0.6' | 'mean:4' | 'none' -> a fresh Smoother (one per stream)."""
    name, _, arg = spec.strip().lower().partition(":")
    if name not in _SMOOTHERS:
        raise EdgevidError(f"--smooth {spec!r}: choose ema:A, mean:N or none")
    try:
        return _SMOOTHERS[name](arg)
    except ValueError:
        raise EdgevidError(f"--smooth {spec!r}: bad number (e.g. ema:0.6, mean:4)") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    """(..., C) logits -> probabilities, numerically stable."""
    z = np.asarray(logits, np.float32)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class LabelScore(NamedTuple):
    """One class of a top-k list: the same shape in Python and in JSON (``{"label", "score"}``);
    a tuple still, so ``for label, score in result.top_k`` works."""

    label: str  # class name
    score: float  # its probability

    def to_json(self) -> dict:
        return {"label": self.label, "score": round(self.score, 5)}


@dataclass(frozen=True)
class Decision:
    label: str  # top label, or "uncertain" when its probability is below the threshold
    score: float  # probability of the top class
    top_k: list[LabelScore]  # the k most probable classes, best first


def decide(
    probs: np.ndarray, labels: Sequence[str], threshold: float = 0.0, top_k: int = 3
) -> Decision:
    """probs (C,) -> label (or "uncertain"), score and the top-k classes."""
    order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
    best = int(order[0])
    score = float(probs[best])
    label = labels[best] if score >= threshold else UNCERTAIN
    return Decision(label, score, [LabelScore(labels[int(i)], float(probs[i])) for i in order])
