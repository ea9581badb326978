"""The real-time loop: read -> push into the rolling buffer -> classify -> report.

    for result in stream("/dev/video0", "prune4.onnx"):
        print(result.label, result.score)
    for result in stream(my_frames(), "prune4.onnx", fps=25, keep_frames=True):
        cv2.imshow("edgevid", result.plot()[..., ::-1])    # RGB -> BGR for OpenCV
    for event in stream_events("clip.mp4", "prune4.onnx"):   # Result, and Segment events
        ...

A source is anything :mod:`edgevid.runtime.sources` opens, or frames handed over in Python:
a numpy clip (T, H, W, 3), a ``cv2.VideoCapture``, an iterable or generator of (H, W, 3)
uint8 RGB frames; they are pulled as the loop has room for them, never all at once.

Several sources are read side by side; every step takes at most one new frame from each
(never waiting for a slow camera while a fast one has frames), pushes it into that
stream's buffer, and runs ONE batched inference for every stream whose turn it is.
With ``gate="motion"`` a stream's turn is skipped while none of its window's frames moved
(:mod:`edgevid.runtime.motion`): a still camera costs its decode, not the model.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edgevid.errors import EdgevidError, SourceError
from edgevid.runtime.backends.base import BATCHING
from edgevid.runtime.buffer import ClipBuffer
from edgevid.runtime.capture import CaptureConfig, Frame, Source, open_source
from edgevid.runtime.classifier import Classifier
from edgevid.runtime.motion import GATES, MotionConfig, MotionGate
from edgevid.runtime.records import record
from edgevid.runtime.render import annotate
from edgevid.runtime.segments import Segment, SegmentConfig, Segmenter
from edgevid.runtime.smoothing import LabelScore, Smoother, decide, make_smoother
from edgevid.runtime.sources import SourceOptions, is_frames
from edgevid.runtime.stats import Stats, StreamCounts

WAIT_S = 0.1  # longest idle wait for a frame before the loop checks its sources again
# one source: a URI, a path, a camera index, or frames handed over in Python (a numpy clip
# (T, H, W, 3) uint8 RGB, a cv2.VideoCapture, an iterable / generator of (H, W, 3) frames)
SourceLike = str | os.PathLike | int | np.ndarray | Iterable[np.ndarray]


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
    fps: float | None = None  # rate of frames handed over in Python (None: a capture's, else 25)
    keep_frames: bool = False  # each Result carries its newest frame (orig_img) for plot()
    gate: str = "none"  # "motion": skip a stream's windows while none of their frames moved
    motion: MotionConfig = field(default_factory=MotionConfig)  # the gate's detector settings
    # several due streams: "auto" runs their clips as one call or one call each, whichever
    # measured faster on the backend (BatchChoice, once per batch size); "batch" | "split"
    batching: str = "auto"


@dataclass
class Result:
    stream: int  # index of the source, in the order given
    source: str  # the source URI
    frame: int  # index of the newest frame in the window
    timestamp: float  # its time in seconds (media time for files, since start when live)
    window_start: float  # time of the oldest frame in the window, same clock
    label: str  # top class, or "uncertain"
    score: float  # its smoothed probability
    top_k: list[LabelScore]  # best classes, best first
    latency_ms: dict[str, float]  # decode / preprocess / inference / total for this window
    probs: np.ndarray = field(repr=False)  # (C,) smoothed probabilities
    model: str = ""  # the model's file (or folder) name
    time: float = 0.0  # wall-clock time the result was produced (Unix seconds)
    orig_img: np.ndarray | None = field(default=None, repr=False)  # (H, W, 3) RGB: keep_frames
    clock: float | None = None  # live sources: Unix time of stream time 0 (None for files)

    def plot(self) -> np.ndarray:
        """A copy of the frame with this result drawn on it as ``edgevid run --output`` draws
        it (label, score, score bar) -> (H, W, 3) uint8 RGB. Needs ``keep_frames=True``."""
        if self.orig_img is None:
            raise EdgevidError("Result.plot() needs the frame: stream(..., keep_frames=True)")
        return annotate(self.orig_img, self.label, self.score)

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
            "top_k": [c.to_json() for c in self.top_k],
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
        })  # fmt: skip


@dataclass
class Step:
    frames: list[Frame]  # the frames read this step (at most one per stream)
    results: list[Result]  # the inferences this step produced (possibly none)
    stilled: list[int] = field(default_factory=list)  # streams whose motion gate closed now


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
    gate: MotionGate | None = None  # motion gating (None: every due window is classified)
    still: bool = False  # the gate skipped this stream's latest due window
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
        sources: SourceLike | Sequence[SourceLike],
        model: str | os.PathLike | Classifier,
        config: StreamConfig | None = None,
        **overrides,
    ) -> None:
        self.config = replace(config or StreamConfig(), **overrides)
        if self.config.every < 1 or (self.config.stride or 1) < 1:
            raise EdgevidError(f"every and stride must be >= 1, got {self.config}")
        if self.config.gate not in GATES:
            raise EdgevidError(f"unknown gate {self.config.gate!r}; choose from {', '.join(GATES)}")
        if self.config.batching not in BATCHING:
            raise EdgevidError(
                f"unknown batching {self.config.batching!r}; choose from {', '.join(BATCHING)}"
            )
        self.classifier = model if isinstance(model, Classifier) else Classifier(model)
        self.classifier.backend.batching = self.config.batching
        one = isinstance(sources, str | os.PathLike | int) or is_frames(sources)
        if not (one or isinstance(sources, list | tuple)):
            raise SourceError(
                f"a {type(sources).__name__} is not a video source: give a path, URI or camera "
                "index, a numpy clip, an iterable of frames, a cv2.VideoCapture, or a list of them"
            )
        uris = [sources] if one else list(sources)  # a list or tuple: several sources
        self.stats = Stats()
        self._backend_timed = False  # the backend's timings() merged into stats
        self._wake = threading.Event()  # set by any capture thread with a new frame
        self.stopping = False  # set by stop(): the loop ends within WAIT_S, whatever it waits on
        self.lanes: list[_Lane] = []
        try:
            for i, uri in enumerate(uris):
                self.lanes.append(self._lane(i, uri))
        except BaseException:
            self.close()
            raise

    def _lane(self, i: int, uri) -> _Lane:
        cfg, meta = self.config, self.classifier.meta
        src = open_source(uri, cfg.capture, cfg.options, stream=i, wake=self._wake, fps=cfg.fps)
        stride = cfg.stride or meta.sampling.stream_stride(src.fps)
        counts = StreamCounts(src.uri)
        self.stats.streams.append(counts)
        buffer = ClipBuffer(meta.num_frames, meta.image_size, stride)
        gate = MotionGate(meta.num_frames * stride, cfg.motion) if cfg.gate == "motion" else None
        return _Lane(src, buffer, make_smoother(cfg.smooth), counts, gate=gate)

    def window_seconds(self, stream: int) -> float:
        """Seconds of video one window of ``stream`` spans (T frames at its stride)."""
        lane = self.lanes[stream]
        return lane.buffer.num_frames * lane.buffer.stride / (lane.source.fps or 25.0)

    def segmenters(self, segments: SegmentConfig | dict | None = None) -> list[Segmenter]:
        """One Segmenter per stream: with ``segments`` for all, or the defaults scaled to
        each stream's window (:meth:`SegmentConfig.for_clip`; a dict: overrides of them)."""

        def config(i: int) -> SegmentConfig:
            if isinstance(segments, SegmentConfig):
                return segments
            return SegmentConfig.for_clip(self.window_seconds(i), **(segments or {}))

        return [Segmenter(config(i), i, lane.source.uri) for i, lane in enumerate(self.lanes)]

    # --- the loop ---------------------------------------------------------------------------
    def events(self, segments: SegmentConfig | dict | None = None) -> Iterator[Result | Segment]:
        """Run the loop; yield each Result, then the Segment events it caused, and at the
        end the closing of the segments still open (see :func:`stream_events`)."""
        segmenters, labels = self.segmenters(segments), self.classifier.labels
        for step in self.steps():
            for i in step.stilled:  # gate="motion": the stream went still, its action ended
                yield from segmenters[i].finish()
            for r in step.results:
                yield r
                yield from segmenters[r.stream].update(r.window_centre, r.probs, labels, r.clock)
        for segmenter in segmenters:
            yield from segmenter.finish()

    def stop(self) -> None:
        """End :meth:`steps` within WAIT_S, from anywhere (a signal handler: a plain flag,
        no lock), even while no frame arrives."""
        self.stopping = True

    def steps(self) -> Iterator[Step]:
        with self:
            while not self.stopping and any(lane.active for lane in self.lanes):
                frames = self._read()
                pushed = [(frame.stream, self._push(frame)) for frame in frames]
                due = [lane for _, lane in pushed if isinstance(lane, _Lane)]
                results = self._classify(due) if due else []
                short = [lane for lane in self.lanes if lane.ended_short]
                if short:  # files shorter than one window still get their one result
                    results += self._classify(short, padded=True)
                yield Step(frames, results, [i for i, lane in pushed if lane is _STILLED])
            self.stats.stop()

    def _read(self) -> list[Frame]:
        """At most one frame per active stream. Files are read in lockstep (waiting for
        their next frame, so their windows line up and batch); live streams never wait:
        the loop sleeps only while no live stream has a frame. Every wait is WAIT_S at
        most, then :attr:`stopping` is checked (none: a stop ends the step)."""
        while not self.stopping:
            self._wake.clear()
            frames = [f for lane in self.lanes if lane.active and (f := self._next(lane))]
            if frames or not any(lane.active for lane in self.lanes):
                return frames
            self._wake.wait(WAIT_S)
        return []

    def _next(self, lane: _Lane) -> Frame | None:
        """``lane``'s next frame: at once for a live stream, else once it is decoded."""
        if lane.source.live:
            return lane.source.get(timeout=0.0)
        while not self.stopping:
            frame = lane.source.get(timeout=WAIT_S)
            if frame is not None or lane.source.done:
                return frame
        return None

    def _push(self, frame: Frame) -> _Lane | object | None:
        """Buffer ``frame``; return its lane if an inference is due now, ``_STILLED`` if its
        motion gate closed now (the stream went still)."""
        lane = self.lanes[frame.stream]
        lane.counts.frames_read += 1
        self.stats.add("decode", frame.decode_s)
        t0 = time.perf_counter()
        eager = lane.gate is None  # gated: prepared when a window is classified, if ever
        if lane.buffer.push(frame.index, frame.image, prepare=eager):
            if eager:
                lane.prep_s = time.perf_counter() - t0
                self.stats.add("preprocess", lane.prep_s)
            lane.fresh = True
        max_frames = self.config.max_frames
        lane.finished = max_frames is not None and frame.index + 1 >= max_frames
        if lane.gate is not None:
            self._observe(lane, frame)
        lane.newest = frame
        if lane.clock is None and lane.source.live:  # frame.timestamp + clock = wall clock
            lane.clock = time.time() - (time.perf_counter() - frame.captured_at) - frame.timestamp
        if lane.buffer.full and lane.fresh and frame.index >= lane.next_due:
            lane.next_due, lane.fresh = frame.index + self.config.every, False
            if lane.gate is None or lane.gate.moving(frame.index):
                lane.still = False
                return lane
            lane.counts.windows_skipped += 1
            if not lane.still:  # stale evidence: the next moving window starts afresh
                lane.still = True
                lane.smoother.reset()
                return _STILLED
        return None

    def _observe(self, lane: _Lane, frame: Frame) -> None:
        """Run the motion detector on ``frame``; count the time a still stream idles."""
        t0 = time.perf_counter()
        lane.gate.observe(frame.index, frame.image)  # type: ignore[union-attr]
        self.stats.add("motion", time.perf_counter() - t0)
        if lane.still and lane.newest is not None:
            lane.counts.idle_s += max(0.0, frame.timestamp - lane.newest.timestamp)

    def _classify(self, due: list[_Lane], padded: bool = False) -> list[Result]:
        """One batched inference for every due stream."""
        for lane in due:  # frames a motion-gated buffer holds unprepared
            t0 = time.perf_counter()
            if lane.buffer.prepare_pending():
                lane.prep_s = time.perf_counter() - t0
                self.stats.add("preprocess", lane.prep_s)
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
            frame.image if cfg.keep_frames else None, lane.clock,
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
        for lane in self.lanes:  # all stop at once, then each is waited for
            lane.source.close(timeout=0.0)
        for lane in self.lanes:
            lane.source.close()
            lane.counts.frames_dropped = lane.source.frames_dropped
            lane.counts.reconnects = lane.source.reconnects
            lane.counts.damaged = lane.source.damage
        backend = self.classifier.backend
        if not self._backend_timed:  # a backend's own stages (e.g. network), once
            self._backend_timed = True
            for stage, seconds in backend.timings().items():
                self.stats.stages[stage].extend(seconds)
        self.stats.batching = {b: asdict(c) for b, c in backend.batch_choices.items()}
        if self.stats.finished is None:
            self.stats.stop()


_STILLED = object()  # _push's answer when a stream's motion gate closes


def stream(
    sources: SourceLike | Sequence[SourceLike],
    model: str | os.PathLike | Classifier,
    config: StreamConfig | None = None,
    **overrides,
) -> Iterator[Result]:
    """Classify one or more sources (a list or tuple: several); yields a Result per
    inference, as it happens. ``overrides``: fields of :class:`StreamConfig` (``every``,
    ``fps``, ``keep_frames``, ...)."""
    for step in Streamer(sources, model, config, **overrides).steps():
        yield from step.results


def stream_events(
    sources: SourceLike | Sequence[SourceLike],
    model: str | os.PathLike | Classifier,
    config: StreamConfig | None = None,
    *,
    segments: SegmentConfig | dict | None = None,
    **overrides,
) -> Iterator[Result | Segment]:
    """:func:`stream` with the action segments, live: yields each Result, then the Segment
    events it caused (``state`` "open" when a segment starts, "closed" when it ends), and
    at the end of the streams the closing of the segments still open. ``segments``: as
    :meth:`Streamer.segmenters`."""
    return Streamer(sources, model, config, **overrides).events(segments)
