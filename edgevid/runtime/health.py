"""How a run is doing while it runs: status records and lines, Prometheus metrics, /healthz.

    monitor = Monitor(HealthConfig(status_s=30, metrics_port=9100))  # binds the port now
    run_streams(streamer, json_path="r.jsonl", monitor=monitor)

Every ``status_s`` seconds (a thread of its own, so a stalled stream is reported too) a
``status`` record goes where the results go (``--json``, MQTT ``TOPIC/status``) and one line
to stderr: per stream fps, dropped frames, age of the newest frame and result, median
latency; the backend. With ``metrics_port``, an HTTP server (extra ``metrics``) answers
``/metrics`` (Prometheus text: frames, drops, inferences, reconnects, a latency histogram,
stream up/down, the MQTT outbox, the process) and ``/healthz``: 200 while every stream
delivers frames, 503 once one has had none for ``unhealthy_s`` seconds (a stream that
ended, a file, is not down). docs/monitoring.md has the names and an example.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import numpy as np

import edgevid
from edgevid.errors import EdgevidError, require
from edgevid.runtime.records import record

if TYPE_CHECKING:
    from edgevid.runtime.outputs import MqttPublisher
    from edgevid.runtime.streamer import Step, Streamer

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # histogram


@dataclass(frozen=True)
class HealthConfig:
    status_s: float = 30.0  # a status record + stderr line every N seconds; 0: none
    unhealthy_s: float = 30.0  # a stream with no frame for this long is down (/healthz: 503)
    metrics_port: int | None = None  # serve /metrics and /healthz on this TCP port; None: no
    metrics_host: str = "127.0.0.1"  # the address that server binds ("0.0.0.0": all IPv4)
    announce: bool = True  # name the model and its backend on stderr at the first frame


@dataclass
class _Lane:
    """What the loop saw of one stream (monotonic times)."""

    last_frame: float | None = None  # the newest frame taken by the loop
    last_result: float | None = None  # the latest result
    latencies: list[float] = field(default_factory=list)  # s, results since the last status
    frames_then: int = 0  # frames read at the last status (fps over the interval)


class Monitor:
    """Fed by the loop (:meth:`step`), read by the status thread and the HTTP server."""

    def __init__(self, config: HealthConfig | None = None) -> None:
        self.config = config or HealthConfig()
        self.streamer: Streamer | None = None
        self.publisher: MqttPublisher | None = None
        self.error: BaseException | None = None  # a status record that could not be written
        self._lock = threading.Lock()
        self._lanes: list[_Lane] = []
        self._started = self._status_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._histogram = None
        self._announced = False  # the start line was printed
        self.server = None if self.config.metrics_port is None else HealthServer(self)

    # --- the loop's side ----------------------------------------------------------------------
    def start(
        self,
        streamer: Streamer,
        emit: Callable[[dict], None] | None = None,
        publisher: MqttPublisher | None = None,
    ) -> None:
        """The loop starts: watch ``streamer``; status records go to ``emit``."""
        with self._lock:
            self._lanes = [_Lane() for _ in streamer.lanes]  # before streamer: the server
            self.streamer, self.publisher = streamer, publisher  # reads both, unlocked
            self._started = self._status_at = time.monotonic()
        if self.config.status_s > 0:
            self._thread = threading.Thread(
                target=self._report, args=(emit,), name="status", daemon=True
            )
            self._thread.start()

    def step(self, step: Step) -> None:
        """One step of the loop: its frames and results. Raises the error of a status
        record that could not be written (a full disk), in the loop's thread."""
        now = time.monotonic()
        if step.frames:
            self._announce()
        with self._lock:
            for frame in step.frames:
                self._lanes[frame.stream].last_frame = now
            for r in step.results:
                lane = self._lanes[r.stream]
                lane.last_result = now
                if self._thread is not None:  # kept for the next status only (bounded)
                    lane.latencies.append(r.latency_ms["total"] / 1e3)
                if self._histogram is not None:
                    self._histogram.labels(str(r.stream)).observe(r.latency_ms["total"] / 1e3)
        if self.error is not None:
            raise self.error

    def _announce(self) -> None:
        """Once, at the first frame (or the first status, if none comes): the model and
        the backend running it. Not before: a source that fails at once stays one line."""
        with self._lock:
            if self._announced or not self.config.announce:
                return
            self._announced = True
        backend = self.streamer.classifier.backend
        _stderr_line(f"edgevid: model {self.streamer.classifier.name} on {backend.name}")
        if backend.selection:  # which engine --device auto took, and why
            _stderr_line(backend.selection)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.server is not None:
            self.server.close()

    # --- what it says -------------------------------------------------------------------------
    def streams(self) -> list[dict]:
        """Per stream: counts, ages, up/down (not the latency: see :meth:`status`)."""
        now, out = time.monotonic(), []
        for i, lane in enumerate(self.streamer.lanes if self.streamer else []):
            seen = self._lanes[i]
            silent = now - (seen.last_frame or self._started)
            out.append({
                "stream": i,
                "source": lane.source.uri,
                "up": lane.active and silent <= self.config.unhealthy_s,
                "down_s": round(silent, 3) if lane.active and silent > self.config.unhealthy_s
                else None,
                "frames_read": lane.counts.frames_read,
                "frames_dropped": lane.source.frames_dropped,
                "inferences": lane.counts.inferences,
                "reconnects": lane.source.reconnects,
                "last_frame_age_s": _age(now, seen.last_frame),
                "last_result_age_s": _age(now, seen.last_result),
            })  # fmt: skip
        return out

    def healthy(self) -> tuple[bool, list[dict]]:
        """(every stream that has not ended delivers frames, the streams that are down)."""
        down = [s for s in self.streams() if s["down_s"] is not None]
        return not down, down

    def status(self) -> dict:
        """The ``status`` record (edgevid/schemas/status.json); fps and latency cover the
        time since the previous call."""
        now = time.monotonic()
        with self._lock:
            streams, dt = self.streams(), max(now - self._status_at, 1e-9)
            for s, seen in zip(streams, self._lanes, strict=True):
                s["fps"] = round((s["frames_read"] - seen.frames_then) / dt, 2)
                s["latency_p50_ms"] = (
                    round(float(np.median(seen.latencies)) * 1e3, 3) if seen.latencies else None
                )
                seen.frames_then, seen.latencies = s["frames_read"], []
            self._status_at = now
        clf = self.streamer.classifier
        down = [s.pop("down_s") for s in streams]
        body = {
            "uptime_s": round(now - self._started, 3),
            "model": clf.name,
            "backend": clf.backend.name,
            "healthy": all(d is None for d in down),
            "streams": streams,
        }
        if self.publisher is not None:
            p = self.publisher
            body["mqtt"] = {"outbox": p.undelivered, "delivered": p.delivered,
                            "dropped": p.dropped, "disconnects": p.disconnects}  # fmt: skip
        return record("status", time.time(), body)

    def _report(self, emit: Callable[[dict], None] | None) -> None:
        while not self._stop.wait(self.config.status_s):
            self._announce()
            rec = self.status()
            _stderr_line(format_status(rec))
            if emit is not None and self.error is None:
                try:
                    emit(rec)
                except (OSError, EdgevidError) as e:  # raised again in the loop's thread
                    self.error = e


def format_status(rec: dict) -> str:
    """A status record as one stderr line."""
    parts = []
    for s in rec["streams"]:
        if s["up"]:
            state = f"{s['fps']:.1f} fps"
        else:
            age = s["last_frame_age_s"]
            state = "DOWN" + (f", no frame for {age:.0f} s" if age is not None else ", no frame")
        result = s["last_result_age_s"]
        p50 = s["latency_p50_ms"]
        parts.append(
            f"[{s['stream']}] {state}, {s['frames_dropped']} dropped, last result "
            + ("never" if result is None else f"{result:.1f} s ago")
            + ("" if p50 is None else f", p50 {p50:.0f} ms")
        )
    mqtt = rec.get("mqtt")
    tail = f"; mqtt outbox {mqtt['outbox']}" if mqtt else ""
    return (f"edgevid: status {rec['time']} up {rec['uptime_s']:.0f} s: " + "; ".join(parts)
            + f"; backend {rec['backend']}{tail}")  # fmt: skip


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 3)


def _stderr_line(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr gone: not worth a crash
        print(line, file=sys.stderr, flush=True)


# --- /metrics and /healthz ------------------------------------------------------------------
class HealthServer:
    """``/metrics`` (Prometheus) and ``/healthz`` on ``metrics_host:metrics_port``, in a
    thread. Binds at construction: a port in use fails the run before the model loads."""

    def __init__(self, monitor: Monitor) -> None:
        prom = require("prometheus_client", "metrics", "--metrics-port")
        cfg = monitor.config
        self.monitor, self._prom = monitor, prom
        self.registry = prom.CollectorRegistry()
        prom.ProcessCollector(registry=self.registry)
        self.registry.register(_Collector(monitor, require("prometheus_client.core", "metrics")))
        monitor._histogram = prom.Histogram(
            "edgevid_latency_seconds", "Frame decoded -> result, per result.", ["stream"],
            registry=self.registry, buckets=LATENCY_BUCKETS_S,
        )  # fmt: skip
        server_class = _IPv6Server if ":" in cfg.metrics_host else _Server
        try:
            self.httpd = server_class((cfg.metrics_host, cfg.metrics_port), _handler(self))
        except OSError as e:
            where, why = f"{cfg.metrics_host}:{cfg.metrics_port}", e.strerror or e
            raise EdgevidError(f"--metrics-port: cannot listen on {where} ({why})") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name="metrics",
        )  # fmt: skip
        self._thread.start()

    def healthz(self) -> tuple[int, dict]:
        if self.monitor.streamer is None:
            return 200, {"status": "starting"}  # loading the model, opening the sources
        ok, down = self.monitor.healthy()
        if ok:
            return 200, {"status": "ok"}
        return 503, {"status": "down", "streams": [
            {"stream": s["stream"], "source": s["source"], "no_frame_for_s": s["down_s"]}
            for s in down
        ]}  # fmt: skip

    def metrics(self) -> bytes:
        return self._prom.generate_latest(self.registry)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: tuple) -> None:
        """One line, not socketserver's traceback (a client gone mid-answer, say)."""
        error = sys.exc_info()[1]
        _stderr_line(f"edgevid: metrics: a request from {client_address[0]} failed ({error!r})")


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def _handler(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                code, body = 200, server.metrics()
                ctype = server._prom.CONTENT_TYPE_LATEST
            elif path == "/healthz":
                code, doc = server.healthz()
                body, ctype = (json.dumps(doc) + "\n").encode(), "application/json"
            else:
                code, body, ctype = 404, b"edgevid: /metrics or /healthz\n", "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # no access log on stderr
            pass

    return Handler


class _Collector:
    """Reads the run's counters at scrape time (the loop never waits for a scrape)."""

    def __init__(self, monitor: Monitor, core) -> None:
        self.monitor, self.core = monitor, core

    def collect(self):
        core, m = self.core, self.monitor
        info = core.InfoMetricFamily("edgevid", "The edgevid version, model and backend.")
        streamer = m.streamer
        labels = {"version": edgevid.__version__}
        if streamer is not None:
            labels |= {"model": streamer.classifier.name,
                       "backend": streamer.classifier.backend.name}  # fmt: skip
        info.add_metric([], labels)
        yield info
        if streamer is None:
            return
        streams = m.streams()
        for name, key, doc, family in (
            ("frames_read", "frames_read", "Frames taken by the loop.", "counter"),
            ("frames_dropped", "frames_dropped", "Frames dropped: inference fell behind.",
             "counter"),
            ("inferences", "inferences", "Results produced.", "counter"),
            ("reconnects", "reconnects", "Times a lost live stream was reopened.", "counter"),
            ("stream_up", "up", "1 while the stream delivers frames, 0 once it is down.",
             "gauge"),
            ("last_frame_age_seconds", "last_frame_age_s", "Seconds since the newest frame.",
             "gauge"),
            ("last_result_age_seconds", "last_result_age_s",
             "Seconds since the latest result.", "gauge"),
        ):  # fmt: skip
            cls = core.CounterMetricFamily if family == "counter" else core.GaugeMetricFamily
            metric = cls(f"edgevid_{name}", doc, labels=["stream", "source"])
            for s in streams:
                if s[key] is not None:
                    metric.add_metric([str(s["stream"]), s["source"]], float(s[key]))
            yield metric
        healthy = core.GaugeMetricFamily("edgevid_healthy", "1 while /healthz answers 200.")
        healthy.add_metric([], float(all(s["down_s"] is None for s in streams)))
        yield healthy
        p = m.publisher
        if p is not None:
            yield core.GaugeMetricFamily(
                "edgevid_mqtt_outbox_messages", "MQTT messages queued, not yet acknowledged.",
                value=p.undelivered,
            )  # fmt: skip
            yield core.CounterMetricFamily(
                "edgevid_mqtt_delivered", "MQTT messages acknowledged by the broker.",
                value=p.delivered,
            )  # fmt: skip
            yield core.CounterMetricFamily(
                "edgevid_mqtt_dropped", "MQTT messages dropped: the outbox was full.",
                value=p.dropped,
            )  # fmt: skip


# --- the client side: Docker's HEALTHCHECK ----------------------------------------------------
class Unhealthy(EdgevidError):
    """/healthz did not answer 200: exit 1, what Docker's HEALTHCHECK reads as unhealthy
    (it reserves 2)."""

    exit_code = 1


def check_health(host: str = "127.0.0.1", port: int = 9100, timeout_s: float = 4.0) -> dict:
    """GET ``http://host:port/healthz``: its JSON when it answers 200, else :class:`Unhealthy`
    (503: a stream is down; no answer: the run is not serving, or hung)."""
    import urllib.error
    import urllib.request

    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise Unhealthy(f"{url}: {e.code} {e.read().decode(errors='replace').strip()}") from None
    except (OSError, ValueError) as e:  # refused, timed out, not JSON
        raise Unhealthy(f"{url}: no answer ({getattr(e, 'reason', None) or e})") from None
