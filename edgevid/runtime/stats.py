"""Run statistics: per-stage latency percentiles, frame counts, throughput.

Stages: decode (capture thread, per frame), preprocess (resize/crop per buffered frame,
normalisation per inference), buffer (assembling clips), inference (the backend call,
per batch); with motion gating, motion (the detector, per frame). The runtime's own
overhead is decode + preprocess + buffer.
For a live source, "decode" includes waiting for the camera's next frame.

A run can last months: each stage keeps an exact count and total, and percentiles over its
newest RECENT samples (:class:`Samples`), so memory stays flat however long it runs.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

STAGES = ("decode", "preprocess", "buffer", "inference")
OVERHEAD_STAGES = ("decode", "preprocess", "buffer")
RECENT = 1 << 16  # samples a stage keeps for its percentiles (an hour of 30 fps frames)


class Samples:
    """One stage's timings in seconds: exact ``count`` and ``total`` over the whole run,
    the newest RECENT values for percentiles. ``len()`` is the count; iterating gives the
    kept values."""

    __slots__ = ("recent", "count", "total")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.recent: deque[float] = deque(maxlen=RECENT)
        self.count, self.total = 0, 0.0
        self.extend(values)

    def append(self, seconds: float) -> None:
        self.recent.append(seconds)
        self.count += 1
        self.total += seconds

    def extend(self, values: Iterable[float]) -> None:
        """Add ``values``; another Samples adds its count and total, not only what it kept."""
        if isinstance(values, Samples):
            self.recent.extend(values.recent)
            self.count, self.total = self.count + values.count, self.total + values.total
            return
        for v in values:
            self.append(v)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[float]:
        return iter(self.recent)

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass
class StreamCounts:
    uri: str  # the source as given
    frames_read: int = 0  # decoded frames
    frames_dropped: int = 0  # decoded but discarded because inference fell behind
    inferences: int = 0  # results produced
    reconnects: int = 0  # times a lost live stream was reopened
    damaged: str | None = None  # a file that decoded short of its declared length: how
    windows_skipped: int = 0  # due windows the motion gate skipped (nothing moved in them)
    idle_s: float = 0.0  # seconds of stream the gate kept still (no inference)


@dataclass
class Stats:
    stages: dict[str, Samples] = field(default_factory=lambda: defaultdict(Samples))  # seconds
    streams: list[StreamCounts] = field(default_factory=list)
    latency: Samples = field(default_factory=Samples)  # seconds, newest frame -> result
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    # batch size -> how the backend runs that many due clips, as measured (BatchChoice)
    batching: dict[int, dict] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage].append(seconds)

    def stop(self) -> None:
        self.finished = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def summary(self) -> dict:
        """Everything as plain JSON-able numbers (milliseconds for times)."""
        frames = sum(s.frames_read for s in self.streams)
        totals = {k: v.total for k, v in self.stages.items()}
        overhead = sum(totals.get(k, 0.0) for k in OVERHEAD_STAGES)
        return {
            "elapsed_s": round(self.elapsed, 3),
            "frames_read": frames,
            "frames_dropped": sum(s.frames_dropped for s in self.streams),
            "damaged_files": [s.damaged for s in self.streams if s.damaged],
            "inferences": sum(s.inferences for s in self.streams),
            "windows_skipped": sum(s.windows_skipped for s in self.streams),
            "idle_s": round(sum(s.idle_s for s in self.streams), 3),
            "fps": round(frames / self.elapsed, 2) if self.elapsed > 0 else 0.0,
            "stages_ms": {k: percentiles(v) for k, v in self.stages.items() if v},
            "stage_totals_s": {k: round(v, 4) for k, v in totals.items()},
            "overhead_ratio": (
                round(overhead / totals["inference"], 4) if totals.get("inference") else None
            ),
            "latency_ms": percentiles(self.latency),
            "streams": [s.__dict__ for s in self.streams],
            "batching": {str(b): c for b, c in sorted(self.batching.items())},
        }

    def format(self) -> str:
        """A few human lines for stderr at the end of a run."""
        s = self.summary()
        lines = [
            f"{s['frames_read']} frames read, {s['frames_dropped']} dropped, "
            f"{s['inferences']} inferences in {s['elapsed_s']:.1f} s ({s['fps']:.1f} fps)"
        ]
        if s["windows_skipped"]:
            lines[0] += f"; motion gate: {s['windows_skipped']} still windows skipped, "
            lines[0] += f"{s['idle_s']:.1f} s idle"
        for name in (*STAGES, *(k for k in s["stages_ms"] if k not in STAGES)):
            p = s["stages_ms"].get(name)
            if p:
                lines.append(
                    f"  {name:<11} p50 {p['p50']:8.2f} ms  p95 {p['p95']:8.2f} ms  "
                    f"p99 {p['p99']:8.2f} ms  (n={p['n']})"
                )
        if s["latency_ms"]:
            p = s["latency_ms"]
            lines.append(
                f"  {'latency':<11} p50 {p['p50']:8.2f} ms  p95 {p['p95']:8.2f} ms  "
                f"p99 {p['p99']:8.2f} ms  (frame decoded -> result)"
            )
        for c in s["batching"].values():  # measured once per batch size
            how = f"{c['batch']} calls of one" if c["split"] else "one call"
            lines.append(
                f"  {c['batch']} due clips run as {how}: measured {c['batched_ms']:.1f} ms "
                f"as one call, {c['split_ms']:.1f} ms as {c['batch']}"
            )
        for st in self.streams if len(self.streams) > 1 else []:
            lines.append(
                f"  [{st.uri}] read {st.frames_read}, dropped {st.frames_dropped}, "
                f"inferences {st.inferences}, reconnects {st.reconnects}"
                + (f", idle {st.idle_s:.1f} s" if st.windows_skipped else "")
            )
        lines += [f"WARNING: {d}" for d in s["damaged_files"]]
        return "\n".join(lines)


def percentiles(values: Samples | Iterable[float]) -> dict:
    """Seconds -> {"p50", "p95", "p99", "mean" in ms, "n"}; {} when empty. Of Samples: the
    percentiles of the newest RECENT, the mean and n of all."""
    samples = values if isinstance(values, Samples) else Samples(values)
    if not samples:
        return {}
    ms = np.fromiter(samples, np.float64) * 1e3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(samples.mean() * 1e3, 3),
        "n": len(samples),
    }
