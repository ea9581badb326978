"""Action segments: which action, from when to when, out of a stream of window results.

Each window result says "label L with probability p" for the T frames it saw; its time is
the centre of those frames. A segment of L **opens** once L has been the top label with a
probability >= ``open_threshold`` for ``min_on_s`` seconds, and starts where that run
began. It **closes** once L's probability has stayed below ``close_threshold`` for
``min_off_s`` seconds (or another label opened, or the stream ended), and ends at the last
window where it still held. Two thresholds and two durations are the hysteresis: one noisy
window neither opens nor breaks a segment.

    seg = Segmenter(SegmentConfig.for_clip(1.6))
    for result in results:
        for event in seg.update(result.window_centre, result.probs, labels):
            print(event.state, event.label, event.start, event.end)
    for event in seg.finish():
        ...

``segment_f1`` and ``boundary_error`` score segments against ground truth
(temporal IoU matching, as ActivityNet-style detection metrics do).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edgevid.runtime.records import iso_time, record

KEPT = 1000  # segments a Segmenter keeps in memory for the timeline and the summary


@dataclass(frozen=True)
class SegmentConfig:
    open_threshold: float = 0.5  # a label must reach this probability (as top label) to open
    close_threshold: float = 0.35  # an open segment holds while its label stays at or above
    min_on_s: float = 0.8  # seconds the label must hold before its segment opens
    min_off_s: float = 0.8  # seconds below close_threshold before the segment closes

    @classmethod
    def for_clip(cls, clip_seconds: float, **overrides: float) -> SegmentConfig:
        """Defaults scaled to the model's clip duration: half a clip to open or close."""
        half = round(max(clip_seconds, 0.0) / 2, 3)
        return replace(cls(min_on_s=half, min_off_s=half), **overrides)

    def validate(self) -> SegmentConfig:
        from edgevid.errors import EdgevidError

        if not 0 <= self.close_threshold <= self.open_threshold <= 1:
            raise EdgevidError(
                "segment thresholds need 0 <= close <= open <= 1, got "
                f"open {self.open_threshold}, close {self.close_threshold}"
            )
        if self.min_on_s < 0 or self.min_off_s < 0:
            raise EdgevidError("segment durations must be >= 0 seconds")
        return self


@dataclass
class Segment:
    label: str  # the action
    start: float  # seconds (media time for files, since start for live streams)
    end: float  # seconds; for an open segment, the latest time it held
    score: float  # mean probability of the label over the segment's windows
    state: str = "open"  # "open" while it lasts, "closed" once ended
    stream: int = 0  # index of the source
    source: str = ""  # the source URI
    id: str = ""  # the same on a segment's open and closed events, unique across runs
    time: float = field(default_factory=time.time)  # wall clock of the event (Unix seconds)
    clock: float | None = None  # live sources: Unix time of stream time 0 (start/end -> wall)

    def to_json(self) -> dict:
        """The ``segment`` record (edgevid/schemas/segment.json)."""
        wall = {} if self.clock is None else {
            "start_time": iso_time(self.clock + self.start),
            "end_time": iso_time(self.clock + self.end),
        }  # fmt: skip
        return record("segment", self.time, {
            "id": self.id,
            "stream": self.stream,
            "source": self.source,
            "label": self.label,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            **wall,
            "score": round(self.score, 4),
            "state": self.state,
        })  # fmt: skip


@dataclass
class _Run:
    label: int  # class index
    since: float  # time of the first window of the run
    last: float  # time of the latest window where it held
    score_sum: float = 0.0  # the label's probability summed over the run's windows
    windows: int = 0  # windows in the run (a running mean: a run can last days)
    id: str = ""  # given when the run opens as a segment

    def add(self, t: float, p: float) -> None:
        self.last, self.score_sum, self.windows = t, self.score_sum + p, self.windows + 1


class Segmenter:
    """Hysteresis over one stream's window results -> segment open/close events."""

    def __init__(self, config: SegmentConfig, stream: int = 0, source: str = "") -> None:
        self.config = config.validate()
        self.stream, self.source = stream, source
        self.labels: Sequence[str] = ()
        self._open: _Run | None = None  # the segment in progress
        self._candidate: _Run | None = None  # a label holding, not (yet) long enough to open
        # the newest KEPT segments, closed or open, in order (the timeline, the summary); the
        # event log has them all. Bounded: a camera runs for months
        self.segments: deque[Segment] = deque(maxlen=KEPT)
        self.count = 0  # segments opened in all
        self.clock: float | None = None  # live: Unix time of stream time 0 (wall-clock times)

    def update(
        self, t: float, probs: np.ndarray, labels: Sequence[str], clock: float | None = None
    ) -> list[Segment]:
        """One window result at time ``t`` (its centre, s), probabilities (C,) -> events.
        ``clock`` (live sources, :attr:`Result.clock`): the Unix time of ``t == 0``, which
        puts the segments' start and end on the wall clock too."""
        self.labels, cfg, events = labels, self.config, []
        self.clock = clock if self.clock is None else self.clock
        top = int(np.argmax(probs))
        p_top = float(probs[top])
        cur = self._open
        if cur is not None:
            p = float(probs[cur.label])
            if p >= cfg.close_threshold:
                cur.add(t, p)
            elif t - cur.last >= cfg.min_off_s:
                events.append(self._close())
        if p_top >= cfg.open_threshold and (self._open is None or top != self._open.label):
            c = self._candidate
            if c is None or c.label != top:
                c = self._candidate = _Run(top, t, t)
            c.add(t, p_top)
            if t - c.since >= cfg.min_on_s:
                if self._open is not None:  # another label took over: cut where it began
                    self._open.last = min(self._open.last, c.since)
                    events.append(self._close())
                c.id = uuid.uuid4().hex
                self._open, self._candidate = c, None
                events.append(self._emit(c, "open"))
        else:
            self._candidate = None
        return events

    def finish(self) -> list[Segment]:
        """The stream ended (or went still): close the segment in progress, forget a label
        that had not held long enough to open."""
        self._candidate = None
        return [self._close()] if self._open is not None else []

    def _close(self) -> Segment:
        seg = self._emit(self._open, "closed")  # type: ignore[arg-type]
        self._open = None
        return seg

    def _emit(self, run: _Run, state: str) -> Segment:
        seg = Segment(
            self.labels[run.label], run.since, run.last, run.score_sum / run.windows,
            state, self.stream, self.source, run.id, clock=self.clock,
        )  # fmt: skip
        if state == "open":
            self.segments.append(seg)
            self.count += 1
        else:  # the open record becomes the closed one
            self.segments[-1] = seg
        return seg


# --- scoring against ground truth -------------------------------------------------------------
def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def match_segments(
    predicted: Sequence[Segment], truth: Sequence[Segment], iou: float = 0.5
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of same-label segments, best IoU first, IoU >= ``iou``."""
    pairs = sorted(
        (
            (temporal_iou((p.start, p.end), (g.start, g.end)), i, j)
            for i, p in enumerate(predicted)
            for j, g in enumerate(truth)
            if p.label == g.label
        ),
        reverse=True,
    )
    used_p, used_g, out = set(), set(), []
    for v, i, j in pairs:
        if v >= iou and i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            out.append((i, j))
    return out


def segment_scores(
    predicted: Sequence[Segment], truth: Sequence[Segment], iou: float = 0.5
) -> dict[str, float | int | None]:
    """Precision, recall and F1 at temporal IoU ``iou``, and the mean absolute boundary error
    (seconds, start and end of every matched pair)."""
    pairs = match_segments(predicted, truth, iou)
    tp = len(pairs)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    errors = [
        abs(getattr(predicted[i], side) - getattr(truth[j], side))
        for i, j in pairs
        for side in ("start", "end")
    ]
    return {
        "predicted": len(predicted),
        "truth": len(truth),
        "matched": tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "boundary_error_s": float(np.mean(errors)) if errors else None,
    }
