"""`edgevid run --publish mqtt://...` against a real Mosquitto broker on 127.0.0.1.

The test starts the broker (a config file binding a free port), subscribes with paho and
compares what arrived with the run's own JSON-lines logs: every result and every segment
event, in order. Then the broker is killed mid-run: the video loses no frame, the run ends
normally, and the summary counts what was delivered, dropped and left undelivered.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgevid.core.video import probe_video
from edgevid.runtime.outputs import AVAILABILITY
from tests.conftest import check_record, read_records
from tests.test_delivery import free_port, wait_for_lines
from tests.test_stream import edgevid

mqtt = pytest.importorskip("paho.mqtt.client", reason="needs the mqtt extra (paho-mqtt)")
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
)
pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs the mosquitto broker (apt-get install mosquitto)"
)
SUMMARY = re.compile(
    r"mqtt (\S+): (\d+) delivered, (\d+) dropped \(outbox full\), (\d+) not delivered at "
    r"exit, (\d+) disconnects"
)


class Broker:
    """A Mosquitto broker on 127.0.0.1:port, started and stopped by the test."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(self.config())
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        return (
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\n"
        )

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert self.proc.poll() is None, "mosquitto exited at start"
                time.sleep(0.05)
        raise AssertionError("mosquitto did not listen within 10 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class Subscriber:
    """Collects every message under ``topic`` (QoS 1), resubscribing after a reconnect; the
    availability messages (``online`` / ``offline``, not JSON) apart, in ``availability``.
    ``setup`` prepares the client before it connects (credentials, TLS)."""

    def __init__(self, port: int, topic: str, setup=None) -> None:
        self.messages: list[tuple[str, dict, float]] = []  # (topic, payload, arrival time)
        self.availability: list[tuple[str, bool]] = []  # (payload, retained)
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{os.getpid()}")
        c.reconnect_delay_set(1, 1)
        if setup is not None:
            setup(c)
        subscribed = threading.Event()
        c.on_connect = lambda cl, *a: cl.subscribe([(topic, 1), (f"{topic}/#", 1)])
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            if msg.topic.endswith(f"/{AVAILABILITY}"):
                self.availability.append((msg.payload.decode(), bool(msg.retain)))
                return
            payload = check_record(json.loads(msg.payload))  # the shipped schema of its type
            self.messages.append((msg.topic, payload, time.monotonic()))

    def wait_for(self, n: int, timeout: float = 15) -> list[tuple[str, dict, float]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_every_result_and_segment_arrives_in_order(tiny_onnx, media_dir, tmp_path):
    with Broker(tmp_path) as broker:
        sub = Subscriber(broker.port, "edgevid/cam0")
        try:
            uri = f"mqtt://127.0.0.1:{broker.port}/edgevid/cam0"
            proc = edgevid("run", "-s", str(media_dir / "carphone_pristine.mp4"), "-m",
                           str(tiny_onnx), "--every", "4", "--publish", uri,
                           "--json", str(tmp_path / "r.jsonl"), "--events",
                           str(tmp_path / "ev.jsonl"), "--segment-threshold", "0.2",
                           "--segment-release", "0.1")  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            results = read_records(tmp_path / "r.jsonl", "result")
            events = read_records(tmp_path / "ev.jsonl", "segment")
            got = sub.wait_for(len(results) + len(events))
        finally:
            sub.close()
    assert len(results) == 29 and len(events) >= 2  # 120 frames, every 4 from frame 7
    assert [m for t, m, _ in got if t == "edgevid/cam0"] == results  # all, in order, intact
    assert [m for t, m, _ in got if t == "edgevid/cam0/segments"] == events
    assert len(got) == len(results) + len(events)
    assert [p for p, _ in sub.availability] == ["online", "offline"]  # a clean end says so
    m = SUMMARY.search(proc.stderr)
    assert m.groups() == (uri, str(len(got)), "0", "0", "0")


@pytest.mark.slow
def test_broker_killed_mid_run_loses_no_frame(tiny_onnx, media_dir, tmp_path):
    """The broker dies 2 s into a 10 s live run and comes back 2 s later. The video loop
    never waits for it: every frame read is in the video, the run ends normally, and the
    summary accounts for every message (delivered + dropped + undelivered = produced)."""
    log, video = tmp_path / "r.jsonl", tmp_path / "out.mp4"
    with Broker(tmp_path) as broker:
        sub = Subscriber(broker.port, "edge")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgevid", "run", "-s", str(media_dir / "bikes.mp4"),
                 "-m", str(tiny_onnx), "--realtime", "--every", "4", "--json", str(log),
                 "--events", str(tmp_path / "ev.jsonl"), "-o", str(video),
                 "--publish", f"mqtt://127.0.0.1:{broker.port}/edge", "--mqtt-outbox", "4"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            wait_for_lines(log, proc, n=3)
            assert len(sub.wait_for(3)) >= 3  # the broker is passing messages on
            broker.kill()
            killed_at = time.monotonic()
            time.sleep(2.0)
            broker.start()
            restarted_at = time.monotonic()
            stdout, stderr = proc.communicate(timeout=120)
            produced = len(read_records(log)) + len(read_records(tmp_path / "ev.jsonl"))
            got = sub.wait_for(produced, timeout=5)
        finally:
            sub.close()
    assert proc.returncode == 0, stderr
    m = re.search(r"(\d+) frames read, (\d+) dropped", stderr)
    read, dropped = int(m.group(1)), int(m.group(2))
    assert read + dropped == 250 and probe_video(video).num_frames == read  # no frame lost
    m = SUMMARY.search(stderr)
    assert m is not None, stderr
    delivered, full, undelivered, disconnects = (int(g) for g in m.groups()[1:])
    assert disconnects >= 1 and full >= 1  # an outbox of 4 overflowed while it was down
    assert delivered + full + undelivered == produced
    before = [msg for t, msg, at in got if at < killed_at and t == "edge"]
    after = [msg for t, msg, at in got if at > restarted_at and t == "edge"]
    assert before and after  # delivery resumed after the reconnect
    frames = [msg["frame"] for t, msg, _ in got if t == "edge"]
    assert frames == sorted(frames)  # still in order


@pytest.mark.slow
def test_status_records_reach_the_broker_with_the_outbox(tiny_onnx, media_dir, tmp_path):
    """--status-s with --publish: status records on TOPIC/status (valid against the schema,
    with the MQTT counters), the same as those in the --json log; /metrics shows the
    outbox gauge and the delivery counters while it runs."""
    from tests.test_health import get, samples, start_run

    log, port = tmp_path / "r.jsonl", free_port()
    with Broker(tmp_path) as broker:
        sub = Subscriber(broker.port, "cam")
        try:
            proc = start_run("-s", str(media_dir / "carphone_pristine.mp4"), "-m",
                             str(tiny_onnx), "--realtime", "--json", str(log), "--status-s",
                             "0.5", "--metrics-port", str(port),
                             "--publish", f"mqtt://127.0.0.1:{broker.port}/cam")  # fmt: skip
            wait_for_lines(log, proc, n=3)
            metrics = samples(get(f"http://127.0.0.1:{port}/metrics")[1])
            _, stderr = proc.communicate(timeout=60)
            logged = [r for r in read_records(log) if r["type"] == "status"]
            got = sub.wait_for(len(read_records(log)))
        finally:
            sub.close()
    assert proc.returncode == 0, stderr
    published = [m for t, m, _ in got if t == "cam/status"]
    assert logged and published == logged  # every status record, on both
    assert all(m["type"] == "status" and set(m["mqtt"]) == {"outbox", "delivered", "dropped",
               "disconnects"} for m in published)  # fmt: skip
    assert published[-1]["mqtt"]["delivered"] > 0 and published[-1]["mqtt"]["dropped"] == 0
    assert "edgevid_mqtt_outbox_messages" in metrics
    assert metrics["edgevid_mqtt_delivered_total"] >= 1
    assert metrics["edgevid_mqtt_dropped_total"] == 0
    assert re.search(r"; mqtt outbox \d+$", stderr, re.M)
