"""The real-time loop: read -> push into the rolling buffer -> classify -> report.

    for result in stream("/dev/video0", "prune4.onnx"):
        print(result.label, result.score)

Several sources are read side by side; every step takes at most one new frame from each
(never waiting for a slow camera while a fast one has frames), pushes it into that
stream's buffer, and runs ONE batched inference for every stream whose turn it is.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edgevid.errors import EdgevidError
from edgevid.runtime.buffer import ClipBuffer
from edgevid.runtime.capture import CaptureConfig, Frame, Source, open_source
from edgevid.runtime.classifier import Classifier
from edgevid.runtime.records import record
from edgevid.runtime.smoothing import Smoother, decide, make_smoother
from edgevid.runtime.sources import SourceOptions
from edgevid.runtime.stats import Stats, StreamCounts

WAIT_S = 0.1  # longest idle wait for a frame before the loop checks its sources again


@dataclass(frozen=True)
class StreamConfig:
    every: int = 8  # one inference every K frames of a stream (once its buffer is full)
    stride: int | None = None  # frames between buffered frames; None: metadata + stream fps
    smooth: str = "ema:0.6"  # probability smoothing across windows: ema:A | mean:N | none
    threshold: float = 0.0  # below this (smoothed) probability the label is "uncertain"
    top_k: int = 3  # classes reported per result
    max_frames: int | None = None  # stop each stream after this many frames (None: its end)
    capture: CaptureConfig = field(default_factory=CaptureConfig)  # queue, realtime, reconnect
    options: SourceOptions = field(default_factory=SourceOptions)  # timeouts, CSI geometry


@dataclass
class Result:
    stream: int  # index of the source, in the order given
    source: str  # the source URI
    frame: int  # index of the newest frame in the window
    timestamp: float  # its time in seconds (media time for files, since start when live)
    window_start: float  # time of the oldest frame in the window, same clock
    label: str  # top class, or "uncertain"
    score: float  # its smoothed probability
    top_k: list[tuple[str, float]]  # best classes, best first
    latency_ms: dict[str, float]  # decode / preprocess / inference / total for this window
    probs: np.ndarray = field(repr=False)  # (C,) smoothed probabilities
    model: str = ""  # the model's file (or folder) name
    time: float = 0.0  # wall-clock time the result was produced (Unix seconds)
    clock: float | None = None  # live sources: Unix time of stream time 0 (None for files)

    @property
    def window_centre(self) -> float:
        """The middle of the frames the window saw: where its evidence sits in time."""
        return (self.window_start + self.timestamp) / 2

    def to_json(self) -> dict:
        """The ``result`` record (edgevid/schemas/result.json)."""
        return record("result", self.time, {
            "stream": self.stream,
            "source": self.source,
            "model": self.model,
            "frame": self.frame,
            "timestamp": round(self.timestamp, 4),
            "window_start": round(self.window_start, 4),
            "label": self.label,
            "score": round(self.score, 5),
            "top_k": [{"label": lab, "score": round(p, 5)} for lab, p in self.top_k],
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
        })  # fmt: skip


@dataclass
class Step:
    frames: list[Frame]  # the frames read this step (at most one per stream)
    results: list[Result]  # the inferences this step produced (possibly none)


@dataclass
class _Lane:
    """One stream's state: its source, buffer, smoother and latest result."""

    source: Source
    buffer: ClipBuffer
    smoother: Smoother
    counts: StreamCounts
    next_due: int = 0  # frame index from which the next inference is due
    finished: bool = False  # reached max_frames
    latest: Result | None = None  # last result, for rendering
    newest: Frame | None = None  # last frame taken from the source
    prep_s: float = 0.0  # preprocessing time of the newest buffered frame
    fresh: bool = False  # a frame entered the buffer since the last inference
    clock: float | None = None  # live: Unix time of stream time 0, fixed at the first frame

    @property
    def active(self) -> bool:
        return not (self.finished or self.source.done)

    @property
    def ended_short(self) -> bool:
        """A file that ended before its buffer filled and has had no result yet."""
        return (
            not self.active and not self.source.live and self.counts.inferences == 0
            and 0 < self.buffer.count < self.buffer.num_frames
        )  # fmt: skip


class Streamer:
    """Runs the loop over one or more sources; :meth:`steps` yields every step."""

    def __init__(
        self,
        sources: str | os.PathLike | int | Sequence[str | os.PathLike | int],
        model: str | os.PathLike | Classifier,
        config: StreamConfig | None = None,
        **overrides,
    ) -> None:
        self.config = replace(config or StreamConfig(), **overrides)
        if self.config.every < 1 or (self.config.stride or 1) < 1:
            raise EdgevidError(f"every and stride must be >= 1, got {self.config}")
        self.classifier = model if isinstance(model, Classifier) else Classifier(model)
        uris = [sources] if isinstance(sources, str | os.PathLike | int) else list(sources)
        self.stats = Stats()
        self._backend_timed = False  # the backend's timings() merged into stats
        self._wake = threading.Event()  # set by any capture thread with a new frame
        self.lanes: list[_Lane] = []
        try:
            for i, uri in enumerate(uris):
                self.lanes.append(self._lane(i, uri))
        except BaseException:
            self.close()
            raise

    def _lane(self, i: int, uri) -> _Lane:
        cfg, meta = self.config, self.classifier.meta
        src = open_source(uri, cfg.capture, cfg.options, stream=i, wake=self._wake)
        stride = cfg.stride or meta.sampling.stream_stride(src.fps)
        counts = StreamCounts(src.uri)
        self.stats.streams.append(counts)
        buffer = ClipBuffer(meta.num_frames, meta.image_size, stride)
        return _Lane(src, buffer, make_smoother(cfg.smooth), counts)

    def window_seconds(self, stream: int) -> float:
        """Seconds of video one window of ``stream`` spans (T frames at its stride)."""
        lane = self.lanes[stream]
        return lane.buffer.num_frames * lane.buffer.stride / (lane.source.fps or 25.0)

    # --- the loop ---------------------------------------------------------------------------
    def steps(self) -> Iterator[Step]:
        with self:
            while any(lane.active for lane in self.lanes):
                frames = self._read()
                due = [lane for frame in frames if (lane := self._push(frame))]
                results = self._classify(due) if due else []
                short = [lane for lane in self.lanes if lane.ended_short]
                if short:  # files shorter than one window still get their one result
                    results += self._classify(short, padded=True)
                yield Step(frames, results)
            self.stats.stop()

    def _read(self) -> list[Frame]:
        """At most one frame per active stream. Files are read in lockstep (waiting for
        their next frame, so their windows line up and batch); live streams never wait:
        the loop sleeps only while no live stream has a frame."""
        while True:
            self._wake.clear()
            frames = [
                f
                for lane in self.lanes
                if lane.active and (f := lane.source.get(timeout=0.0 if lane.source.live else None))
            ]
            if frames or not any(lane.active for lane in self.lanes):
                return frames
            self._wake.wait(WAIT_S)

    def _push(self, frame: Frame) -> _Lane | None:
        """Buffer ``frame``; return its lane if an inference is due now."""
        lane = self.lanes[frame.stream]
        lane.counts.frames_read += 1
        self.stats.add("decode", frame.decode_s)
        t0 = time.perf_counter()
        if lane.buffer.push(frame.index, frame.image):
            lane.prep_s = time.perf_counter() - t0
            self.stats.add("preprocess", lane.prep_s)
            lane.fresh = True
        max_frames = self.config.max_frames
        lane.finished = max_frames is not None and frame.index + 1 >= max_frames
        lane.newest = frame
        if lane.clock is None and lane.source.live:  # frame.timestamp + clock = wall clock
            lane.clock = time.time() - (time.perf_counter() - frame.captured_at) - frame.timestamp
        if lane.buffer.full and lane.fresh and frame.index >= lane.next_due:
            lane.next_due, lane.fresh = frame.index + self.config.every, False
            return lane
        return None

    def _classify(self, due: list[_Lane], padded: bool = False) -> list[Result]:
        """One batched inference for every due stream."""
        t0 = time.perf_counter()
        take = (lambda b: b.padded_clip()) if padded else (lambda b: b.clip())
        clips = np.stack([take(lane.buffer) for lane in due])  # (B, T, S, S, 3) uint8
        t1 = time.perf_counter()
        x = self.classifier.to_input(clips)  # (B, T, 3, S, S) float32 | (B, T, S, S, 3) uint8
        t2 = time.perf_counter()
        probs = self.classifier.run(x)  # (B, C)
        t3 = time.perf_counter()
        for stage, dt in (("buffer", t1 - t0), ("preprocess", t2 - t1), ("inference", t3 - t2)):
            self.stats.add(stage, dt)
        return [self._result(lane, p, t2 - t1, t3 - t2) for lane, p in zip(due, probs, strict=True)]

    def _result(self, lane: _Lane, probs: np.ndarray, norm_s: float, infer_s: float) -> Result:
        cfg, frame = self.config, lane.newest
        smoothed = lane.smoother(probs)
        d = decide(smoothed, self.classifier.labels, cfg.threshold, cfg.top_k)
        total = time.perf_counter() - frame.captured_at + frame.decode_s
        self.stats.latency.append(total)
        lane.counts.inferences += 1
        ms = {
            "decode": frame.decode_s * 1e3,
            "preprocess": (lane.prep_s + norm_s) * 1e3,
            "inference": infer_s * 1e3,
            "total": total * 1e3,
        }
        oldest = int(lane.buffer.indices()[0]) if lane.buffer.count else frame.index
        fps = lane.source.fps or 25.0
        start = max(0.0, frame.timestamp - (frame.index - oldest) / fps)
        lane.latest = Result(
            frame.stream, lane.source.uri, frame.index, frame.timestamp, start,
            d.label, d.score, d.top_k, ms, smoothed, self.classifier.name, time.time(),
            lane.clock,
        )  # fmt: skip
        return lane.latest

    # --- lifetime ---------------------------------------------------------------------------
    def __enter__(self) -> Streamer:
        self.stats.started = time.perf_counter()
        for lane in self.lanes:
            lane.source.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for lane in self.lanes:
            lane.source.close()
            lane.counts.frames_dropped = lane.source.frames_dropped
            lane.counts.reconnects = lane.source.reconnects
            lane.counts.damaged = lane.source.damage
        if not self._backend_timed:  # a backend's own stages (e.g. network), once
            self._backend_timed = True
            for stage, seconds in self.classifier.backend.timings().items():
                self.stats.stages[stage].extend(seconds)
        if self.stats.finished is None:
            self.stats.stop()


def stream(
    sources: str | os.PathLike | int | Sequence[str | os.PathLike | int],
    model: str | os.PathLike | Classifier,
    config: StreamConfig | None = None,
    **overrides,
) -> Iterator[Result]:
    """Classify one or more live or file sources; yields a Result per inference."""
    for step in Streamer(sources, model, config, **overrides).steps():
        yield from step.results
