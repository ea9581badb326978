"""The loop with its outputs, as one call: what ``edgevid run`` (and the demo) do.

    streamer = Streamer(["cam.mp4"], "prune4.onnx", StreamConfig(every=8))
    outcome = run_streams(streamer, output="annotated.mp4", json_path="results.jsonl")
    print(streamer.stats.format())

Everything leaves as it happens: each result is written (and flushed) to ``json_path``
(a live log; "-" is stdout), published (``publish="mqtt://host/topic"``) and handed to
``on_result``; action segments (``segments``) go to ``events_path`` / MQTT /
``on_segment`` (a callable taking each :class:`~edgevid.runtime.segments.Segment`) when they
open and when they close. Without the outputs, :func:`edgevid.runtime.stream_events` gives
the same results and segment events as one iterator. The annotated video(s) go to
``output`` (in parts of ``output_segment_s`` seconds if given, each published when
complete); ``show`` opens a window.

Ctrl-C ends the run like the end of the stream, and so do SIGTERM and SIGHUP inside
:func:`stop_on_signals` (``docker stop``, systemd, a closed terminal): the loop stops, open
segments close, the video is finished and published, the logs are complete. Any error
discards the unfinished video part; log lines written so far stay (they are complete).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgevid.runtime.health import Monitor
from edgevid.runtime.outputs import JsonLines, MqttConfig, MqttPublisher, MqttTarget
from edgevid.runtime.render import Renderer
from edgevid.runtime.segments import Segment, SegmentConfig
from edgevid.runtime.stats import Stats
from edgevid.runtime.streamer import Result, Streamer

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # each ends a run the same way
STOP_FLUSH_S = 0.5  # after a stop signal, the most an MQTT outbox gets to drain


@dataclass
class RunOutcome:
    stats: Stats  # frames, drops, inferences, per-stage latency
    written: list[Path] = field(default_factory=list)  # annotated videos and the JSON files
    interrupted: bool = False  # ended by Ctrl-C / a stop signal rather than the streams' end
    stopped_by: str | None = None  # "SIGINT", "SIGTERM" or "SIGHUP" when interrupted
    segments: list[Segment] = field(default_factory=list)  # the newest segments, all streams
    report: list[str] = field(default_factory=list)  # extra summary lines (publishing)
    segment_count: int | None = None  # segments in all (None: as many as listed)

    def format_segments(self) -> str:
        """The segments as summary lines for stderr."""
        if not self.segments:
            return "segments: none"
        count = self.segment_count or len(self.segments)
        lines = [f"segments: {count}"]
        if count > len(self.segments):  # a long run: its event log (--events) has them all
            lines[0] += f" (the last {len(self.segments)} listed)"
        for s in self.segments:
            lines.append(
                f"  [{s.stream}] {s.label:<16} {s.start:8.2f} - {s.end:8.2f} s  score {s.score:.2f}"
            )
        return "\n".join(lines)


class Delivery:
    """Where results and segment events go, all opened up front (a bad path or a broker
    that cannot be reached fails here, before a frame is read)."""

    def __init__(
        self,
        json_path: str | os.PathLike | None = None,
        events_path: str | os.PathLike | None = None,
        publish: str | None = None,
        mqtt: MqttConfig | None = None,
    ) -> None:
        self.logs: dict[str, JsonLines] = {}  # by path: --json - and --events - share stdout
        self.results_log: JsonLines | None = None
        self.events_log: JsonLines | None = None
        self.publisher: MqttPublisher | None = None
        self._lock = threading.Lock()  # the status thread writes too (runtime/health.py)
        mqtt = mqtt or MqttConfig()
        target = MqttTarget.parse(publish, mqtt.ca) if publish else None  # before any I/O
        try:
            if json_path is not None:
                self.results_log = self._log(json_path, "--json")
            if events_path is not None:
                self.events_log = self._log(events_path, "--events")
            if target is not None:
                self.publisher = MqttPublisher(target, mqtt)
        except BaseException:
            self.abort()
            raise

    def _log(self, path: str | os.PathLike, what: str) -> JsonLines:
        key = str(path) if str(path) == "-" else os.path.abspath(path)
        if key not in self.logs:
            self.logs[key] = JsonLines(path, what)
        return self.logs[key]

    def result(self, r: Result) -> None:
        self._send(r.to_json(), self.results_log, "")

    def segment(self, s: Segment) -> None:
        self._send(s.to_json(), self.events_log, "segments")

    def status(self, record: dict) -> None:
        """A status record (runtime/health.py): beside the results, MQTT TOPIC/status."""
        self._send(record, self.results_log, "status")

    def _send(self, record: dict, log: JsonLines | None, subtopic: str) -> None:
        with self._lock:
            if log is not None:
                log.write(record)
            if self.publisher is not None:
                self.publisher.publish(record, subtopic)

    def files(self) -> list[Path]:
        return [Path(log.name) for log in self.logs.values() if log.name != "-"]

    def report(self) -> list[str]:
        lines = [self.publisher.report()] if self.publisher is not None else []
        lines += [
            f"{log.name}: {log.dropped} lines dropped (its reader fell behind), "
            f"{log.unwritten} not taken at exit"
            for log in self.logs.values()
            if log.dropped or log.unwritten
        ]
        return lines

    def close(self, stopping: bool = False) -> None:
        """Close every output; ``stopping`` (a stop signal) bounds the time a broker that
        is away gets for the queued messages, so the stop takes < 2 s."""
        for log in self.logs.values():
            log.close()
        if self.publisher is not None:
            flush = min(STOP_FLUSH_S, self.publisher.config.flush_s) if stopping else None
            self.publisher.close(flush)

    def abort(self) -> None:
        """Close, and remove the log files this run created and never wrote to (the run
        never started): every file that existed before is left as it was."""
        self.close()
        for log in self.logs.values():
            if log.created and log.records == 0:
                Path(log.name).unlink(missing_ok=True)


def run_streams(
    streamer: Streamer,
    *,
    output: str | os.PathLike | None = None,
    show: bool = False,
    json_path: str | os.PathLike | None = None,
    events_path: str | os.PathLike | None = None,
    publish: str | None = None,
    segments: SegmentConfig | dict | None = None,
    output_segment_s: float | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_segment: Callable[[Segment], None] | None = None,
    delivery: Delivery | None = None,
    monitor: Monitor | None = None,
) -> RunOutcome:
    """Run ``streamer`` to its end (or Ctrl-C / a stop signal, or q in the window),
    delivering every result and segment event as it happens. ``segments``: a config, or
    None (or a dict of overrides) for the defaults scaled to each stream's window
    duration (:meth:`SegmentConfig.for_clip`).
    ``delivery``: outputs opened by the caller (then ``json_path``, ``events_path`` and
    ``publish`` are ignored); closed here either way. ``monitor``: status records and lines,
    /metrics and /healthz (:mod:`edgevid.runtime.health`); closed here too."""
    ok, interrupted, renderer = False, False, None
    segmenters = streamer.segmenters(segments)
    try:
        if delivery is None:
            delivery = Delivery(json_path, events_path, publish)
        renderer = Renderer(
            streamer, output, show, output_segment_s, lambda i: segmenters[i].segments
        )
        labels = streamer.classifier.labels
        if monitor is not None:
            monitor.start(streamer, delivery.status, delivery.publisher)

        def emit(events: list[Segment]) -> None:
            for event in events:
                delivery.segment(event)
                if on_segment is not None:
                    on_segment(event)

        try:
            with _loop_signals(streamer.stop):
                for step in streamer.steps():
                    for i in step.stilled:  # a still stream's action has ended
                        emit(segmenters[i].finish())
                    for result in step.results:
                        delivery.result(result)
                        if on_result is not None:
                            on_result(result)
                        segmenter = segmenters[result.stream]
                        emit(segmenter.update(result.window_centre, result.probs, labels,
                                             result.clock))  # fmt: skip
                    if monitor is not None:  # after the results: a scrape sees them counted
                        monitor.step(step)
                    if not renderer(step) or _stop_requested():
                        break
        except KeyboardInterrupt:  # Ctrl-C outside stop_on_signals: how a camera run ends
            interrupted = True
        interrupted = interrupted or _stop_requested()
        for seg in segmenters:
            emit(seg.finish())
        ok = True
    finally:
        if monitor is not None:
            monitor.close()
        streamer.close()
        written = renderer.close(ok) if renderer is not None else []
        if delivery is not None:  # on an error, logs nothing was written to are removed
            delivery.close(_stop_requested()) if ok else delivery.abort()
    return RunOutcome(
        streamer.stats, written + delivery.files(), interrupted,
        (_STATE.received or "SIGINT") if interrupted else None,
        [s for seg in segmenters for s in seg.segments], delivery.report(),
        sum(seg.count for seg in segmenters),
    )  # fmt: skip


# --- stop signals ------------------------------------------------------------------------------
class _SignalState:
    """What a stop signal does now: raise KeyboardInterrupt (before the loop runs), ask the
    loop to stop after the current step (while it runs), or nothing (during cleanup)."""

    installed = False  # inside stop_on_signals
    mode = "raise"  # "raise" | "flag" | "ignore"
    received: str | None = None  # name of the first stop signal
    on_stop: Callable[[], None] | None = None  # ends the loop now (Streamer.stop), in "flag"


_STATE = _SignalState()


def _on_signal(signum: int, frame: object) -> None:
    name = signal.Signals(signum).name
    if _STATE.received is not None or _STATE.mode == "ignore":
        return  # a repeat, or the run is already ending: let it finish
    _STATE.received = name
    if _STATE.mode == "raise":
        raise KeyboardInterrupt(name)
    if _STATE.on_stop is not None:
        _STATE.on_stop()


@contextlib.contextmanager
def _loop_signals(stop: Callable[[], None]) -> Iterator[None]:
    """While the loop runs, a stop signal calls ``stop`` and ends the loop after the step
    in progress (every frame read is rendered and every result delivered), even while no
    frame arrives; afterwards, signals are ignored."""
    _STATE.mode, _STATE.on_stop = "flag", stop
    try:
        yield
    finally:
        _STATE.mode, _STATE.on_stop = "ignore", None


def _stop_requested() -> bool:
    return _STATE.installed and _STATE.received is not None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP end a run the same way inside this block (main
    thread only; elsewhere a no-op; a signal the process ignores, as under nohup, stays
    ignored): the loop stops after its current step, and a second
    signal during the cleanup is ignored. Before the loop starts they raise
    KeyboardInterrupt, like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [  # a signal ignored on purpose stays ignored (nohup: SIGHUP, background: SIGINT)
        n
        for n in STOP_SIGNALS
        if hasattr(signal, n) and signal.getsignal(getattr(signal, n)) is not signal.SIG_IGN
    ]
    previous = {n: signal.signal(getattr(signal, n), _on_signal) for n in names}
    _STATE.installed, _STATE.mode, _STATE.received = True, "raise", None
    try:
        yield
    finally:
        _STATE.installed, _STATE.mode = False, "raise"
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)
