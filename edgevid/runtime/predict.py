"""The two-line API: a video and a model in, the action out.

    import edgevid
    result = edgevid.predict("bikes.mp4", "exports/prune4.onnx")
    print(result.label, result.score, result.segments)

A video is any source :func:`edgevid.runtime.stream` takes: a file, an image folder, a URI, or
frames handed over in Python (a numpy clip, an iterable of frames with ``fps=``, a
``cv2.VideoCapture``). A model is any form :mod:`edgevid.runtime.resolve` accepts: a model
file, an export folder, a training checkpoint folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from edgevid.errors import ModelError
from edgevid.runtime.classifier import Classifier
from edgevid.runtime.segments import Segment, SegmentConfig
from edgevid.runtime.smoothing import LabelScore, decide
from edgevid.runtime.streamer import Result, SourceLike, Streamer


@dataclass
class VideoPrediction:
    label: str  # the clip-level action: top class of the mean window probabilities
    score: float  # its mean probability
    top_k: list[LabelScore]  # best classes, best first
    results: list[Result] = field(repr=False)  # every window's Result
    segments: list[Segment] = field(default_factory=list)  # the action segments, in order
    probs: np.ndarray = field(default=None, repr=False)  # (C,) mean window probabilities

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "score": round(self.score, 5),
            "top_k": [c.to_json() for c in self.top_k],
            "windows": len(self.results),
            "segments": [s.to_json() for s in self.segments],
        }


def predict(
    source: SourceLike,
    model: str | os.PathLike,
    *,
    every: int = 8,
    smooth: str = "ema:0.6",
    top_k: int = 3,
    device: str = "auto",
    threads: int | None = None,
    segments: SegmentConfig | None = None,
    **overrides: object,
) -> VideoPrediction:
    """Classify ``source`` (a video file, image folder, source URI, numpy clip, iterable of
    frames, cv2.VideoCapture) with ``model`` (.onnx, .xml, .engine, export folder or
    checkpoint folder): the clip-level label, every window's result (one every ``every``
    frames, smoothed like ``edgevid run``) and the action segments. ``segments``: a
    :class:`~edgevid.runtime.segments.SegmentConfig` (default: scaled to the window).
    ``overrides``: other :class:`~edgevid.runtime.streamer.StreamConfig` fields (``fps``,
    ``keep_frames``, ...)."""
    clf = Classifier(model, device=device, threads=threads)
    try:
        streamer = Streamer(source, clf, every=every, smooth=smooth, top_k=top_k, **overrides)
        uri = streamer.lanes[0].source.uri
        events = list(streamer.events(segments))
    finally:
        clf.close()
    results = [e for e in events if isinstance(e, Result)]
    if not results:
        raise ModelError(f"{uri}: no frames to classify")
    closed = [e for e in events if isinstance(e, Segment) and e.state == "closed"]
    mean = np.mean([r.probs for r in results], axis=0)  # (C,)
    d = decide(mean, clf.labels, 0.0, top_k)
    return VideoPrediction(d.label, d.score, d.top_k, results, closed, mean)
