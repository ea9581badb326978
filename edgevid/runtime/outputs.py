"""Where results and segment events go as they happen: JSON-lines logs and MQTT.

Every output is opened before the first frame is read (a bad path or an unreachable broker
fails the run at once, with one clear line) and receives each record the moment the loop
produces it:

    log = JsonLines("results.jsonl")        # or "-" for stdout
    log.write(result.to_json())             # written and flushed: `tail -f` sees it now

A JSON-lines file is a log, not an artefact: it is written in place, one whole line per
write, flushed per line, so a crash leaves every line written so far intact and parseable
(and a reader never waits for the end of a run).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from edgevid.errors import EdgevidError, require


def dumps(record: dict) -> str:
    """One JSON line; non-ASCII labels stay readable (UTF-8, not \\u escapes)."""
    return json.dumps(record, ensure_ascii=False)


class JsonLines:
    """A live JSON-lines log on a file (truncated when opened) or stdout (``-``)."""

    def __init__(self, path: str | os.PathLike, what: str = "--json") -> None:
        self.name = str(path)
        self.records = 0  # lines written
        self._own = self.name != "-"
        if not self._own:
            self._f: TextIO = sys.stdout
            return
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(p, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        except OSError as e:
            raise EdgevidError(f"{what} {p}: cannot write ({e.strerror or e})") from None

    def write(self, record: dict) -> None:
        try:
            self._f.write(dumps(record) + "\n")  # one write per line: never half a record
            self._f.flush()
        except OSError as e:  # a full disk: name the file, not just the cause
            raise OSError(e.errno, e.strerror or str(e), self.name) from e
        self.records += 1

    def close(self) -> None:
        if self._own and not self._f.closed:
            self._f.close()


# --- MQTT --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MqttTarget:
    host: str  # broker host name or address
    port: int  # broker TCP port
    topic: str  # results go here; segment events to TOPIC/segments

    @property
    def uri(self) -> str:
        return f"mqtt://{self.host}:{self.port}/{self.topic}"

    @classmethod
    def parse(cls, uri: str) -> MqttTarget:
        """``mqtt://HOST[:PORT]/TOPIC`` (port 1883 by default) or raise one clear error."""
        bad = f"--publish {uri!r}: expected mqtt://HOST[:PORT]/TOPIC"
        parts = urlsplit(uri)
        if parts.scheme != "mqtt":
            raise EdgevidError(f"{bad} (only mqtt:// is supported)")
        try:
            port = parts.port or 1883
        except ValueError:
            raise EdgevidError(f"{bad} (bad port)") from None
        topic = parts.path.lstrip("/")
        if not parts.hostname or not topic:
            raise EdgevidError(f"{bad} (missing {'host' if not parts.hostname else 'topic'})")
        if "#" in uri or any(c in topic for c in "+\0"):  # '#' would parse as a fragment
            raise EdgevidError(f"{bad} (a topic to publish on has no wildcards + or #)")
        return cls(parts.hostname, port, topic)


@dataclass(frozen=True)
class MqttConfig:
    outbox: int = 1000  # messages held while the broker is slow or away; beyond: dropped
    connect_timeout_s: float = 5.0  # first connection: fail the run if no broker by then
    flush_s: float = 3.0  # at the end, wait this long for queued messages to be delivered
    qos: int = 1  # 1: at least once, resent after a reconnect


class MqttPublisher:
    """Publishes JSON records to a broker without ever blocking the video loop.

    paho's network thread does the I/O and reconnects (every 1-2 s); messages
    wait in paho's bounded queue (``outbox``) while the broker is away and are sent in
    order once it is back. A full outbox drops the new message and counts it.
    """

    def __init__(self, target: MqttTarget, config: MqttConfig | None = None) -> None:
        mqtt = require("paho.mqtt.client", "mqtt", "--publish mqtt://")
        self.target, self.config = target, config or MqttConfig()
        self.sent = 0  # handed to paho
        self.delivered = 0  # acknowledged by the broker
        self.dropped = 0  # refused because the outbox was full
        self.disconnects = 0  # times the broker went away
        self._closing = False  # our own disconnect at the end is not counted
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._mqtt = mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgevid-{os.getpid()}")
        c.max_queued_messages_set(self.config.outbox)
        c.max_inflight_messages_set(min(20, self.config.outbox))
        c.reconnect_delay_set(1, 2)
        c.connect_timeout = self.config.connect_timeout_s
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c
        try:
            c.connect(target.host, target.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise EdgevidError(f"{target.uri}: cannot connect to the MQTT broker ({e})") from None
        c.loop_start()
        if not self._connected.wait(self.config.connect_timeout_s):
            self._stop()
            raise EdgevidError(f"{target.uri}: the MQTT broker did not accept the connection")

    # paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self._connected.is_set() and not self._closing:
            self.disconnects += 1
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        with self._lock:
            self.delivered += 1

    def publish(self, record: dict, subtopic: str = "") -> None:
        """Queue ``record`` (never blocks); counted as dropped when the outbox is full."""
        topic = f"{self.target.topic}/{subtopic}" if subtopic else self.target.topic
        info = self._client.publish(topic, dumps(record).encode(), qos=self.config.qos)
        if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
        else:  # success, or no connection right now: paho resends after reconnecting
            self.sent += 1

    def close(self) -> None:
        """Give queued messages ``flush_s`` to reach the broker, then disconnect."""
        deadline = time.monotonic() + self.config.flush_s
        while self.delivered < self.sent and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop()

    def _stop(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def undelivered(self) -> int:
        return max(0, self.sent - self.delivered)

    def report(self) -> str:
        return (
            f"mqtt {self.target.uri}: {self.delivered} delivered, {self.dropped} dropped "
            f"(outbox full), {self.undelivered} not delivered at exit, "
            f"{self.disconnects} disconnects"
        )
