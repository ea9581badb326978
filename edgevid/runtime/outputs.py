"""Where results and segment events go as they happen: JSON-lines logs and MQTT.

Every output is opened before the first frame is read (a bad path or an unreachable broker
fails the run at once, with one clear line) and receives each record the moment the loop
produces it:

    log = JsonLines("results.jsonl")        # or "-" for stdout
    log.write(result.to_json())             # written and flushed: `tail -f` sees it now

A JSON-lines file is a log, not an artefact: it is appended to (a restarted run continues
it; nothing in it is ever truncated), one whole line per write, unbuffered, so a crash
leaves every line written so far intact and parseable (and a reader never waits for the
end of a run). See docs/operations.md, "Files edgevid writes".
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote, urlsplit

from edgevid.core.redact import redact
from edgevid.errors import EdgevidError, require

DRAIN_S = 0.5  # at the end, how long a FIFO / device gets to take the queued lines


def dumps(record: dict) -> str:
    """One JSON line; non-ASCII labels stay readable (UTF-8, not \\u escapes)."""
    return json.dumps(record, ensure_ascii=False)


class JsonLines:
    """A live JSON-lines log: a file (appended to, never truncated), a FIFO or device, or
    stdout (``-``). A line is written whole or not at all: on a regular file a failed
    write (a full disk) is cut back to the last whole line and raises an OSError naming
    the file. A FIFO, pipe or device is fed by a writer thread through a bounded queue
    (``queue_size`` lines; beyond, new lines are dropped and counted), so a consumer that
    stops reading never stalls the loop or a stop."""

    def __init__(self, path: str | os.PathLike, what: str = "--json", queue_size: int = 1000):
        self.name = str(path)
        self.records = 0  # lines written (or queued, for a FIFO / device)
        self.dropped = 0  # lines dropped: the FIFO / device queue was full
        self.created = False  # the file did not exist before: edgevid may remove it
        self._stream: TextIO | None = None  # stdout without a file descriptor (tests)
        self._fd: int | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None  # the writer thread's failure, raised on next write
        if self.name == "-":
            try:
                sys.stdout.flush()
                self._fd = sys.stdout.fileno()
            except (AttributeError, OSError, ValueError):
                self._stream = sys.stdout
        else:
            self._fd = _open_log(Path(path), what, self)
        if self._fd is not None and not stat.S_ISREG(os.fstat(self._fd).st_mode):
            self._queue = queue.Queue(queue_size)
            self._thread = threading.Thread(target=self._drain, name="jsonl-writer", daemon=True)
            self._thread.start()

    def write(self, record: dict) -> None:
        data = (dumps(record) + "\n").encode()
        if self._error is not None:
            raise self._error
        if self._stream is not None:
            self._stream.write(data.decode())
            self._stream.flush()
        elif self._queue is not None:
            try:
                self._queue.put_nowait(data)
            except queue.Full:
                self.dropped += 1
                return
        else:
            self._append(data)
        self.records += 1

    def _append(self, data: bytes) -> None:
        """Append ``data`` to the regular file whole, or cut the file back to where it was."""
        assert self._fd is not None
        good = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, good)
            raise OSError(e.errno, e.strerror or str(e), self.name) from None

    def _drain(self) -> None:  # the writer thread of a FIFO / device
        fd, lines = self._fd, self._queue
        assert fd is not None and lines is not None
        try:
            while (data := lines.get()) is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        except OSError as e:
            self._error = OSError(e.errno, e.strerror or str(e), self.name)
        finally:
            if self.name != "-":
                os.close(fd)

    def close(self, wait_s: float = DRAIN_S) -> None:
        """Close; a FIFO / device gets ``wait_s`` to take the lines still queued (a
        consumer that stopped reading keeps them, and is left to the exiting process)."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=wait_s)  # type: ignore[union-attr]
            self._thread.join(timeout=wait_s)
            self._thread = None
        elif self._fd is not None and self.name != "-":
            os.close(self._fd)
        self._fd = None

    @property
    def unwritten(self) -> int:
        """Lines queued for a FIFO / device that it had not taken at close."""
        return self._queue.qsize() if self._queue is not None else 0


def _open_log(path: Path, what: str, log: JsonLines) -> int:
    """Open ``path`` to append to (created if absent: ``log.created``); a FIFO blocks here
    until its reader opens it (a stop signal still ends the wait)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o666)
            log.created = True
            return fd
        except FileExistsError:
            return os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as e:
        raise EdgevidError(f"{what} {path}: cannot write ({e.strerror or e})") from None


# --- MQTT --------------------------------------------------------------------------------------
ENV_USERNAME = "EDGEVID_MQTT_USERNAME"  # broker user name when the URI has none
ENV_PASSWORD = "EDGEVID_MQTT_PASSWORD"  # broker password when the URI has none (keeps it off argv)
ENV_CA = "EDGEVID_MQTT_CA"  # CA certificate (PEM) for mqtts:// when --mqtt-ca is not given
SCHEMES = {"mqtt": 1883, "mqtts": 8883}  # scheme -> default port; mqtts:// is MQTT over TLS
AVAILABILITY = "availability"  # TOPIC/availability: retained "online", and "offline" as the will
ONLINE, OFFLINE = b"online", b"offline"


@dataclass(frozen=True)
class MqttTarget:
    host: str  # broker host name or address
    port: int  # broker TCP port
    topic: str  # results go here; segment events to TOPIC/segments
    tls: bool = False  # mqtts://: TLS, the broker's certificate checked (CA: ca, else the system's)
    username: str | None = None  # from the URI, else $EDGEVID_MQTT_USERNAME
    password: str | None = field(default=None, repr=False)  # URI, else $EDGEVID_MQTT_PASSWORD
    ca: str | None = None  # CA file (PEM) for mqtts://: --mqtt-ca, else $EDGEVID_MQTT_CA

    @property
    def uri(self) -> str:
        """The target as printed: never the password (the user name, where one is given)."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}/{self.topic}"

    @classmethod
    def parse(
        cls, uri: str, ca: str | None = None, env: Mapping[str, str] = os.environ
    ) -> MqttTarget:
        """``mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC`` (port 1883, 8883 for mqtts) or
        raise one clear error. Credentials the URI lacks come from the environment."""
        bad = f"--publish {redact(uri)!r}: expected mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC"
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError as e:  # a malformed IPv6 address
            raise EdgevidError(f"{bad} ({e})") from None
        if parts.scheme not in SCHEMES:
            raise EdgevidError(f"{bad} (only mqtt:// and mqtts:// are supported)")
        try:
            port = parts.port or SCHEMES[parts.scheme]
        except ValueError as e:
            raise EdgevidError(f"{bad} (bad port: {e})") from None
        topic = parts.path.lstrip("/")
        if not host or not topic:
            raise EdgevidError(f"{bad} (missing {'host' if not host else 'topic'})")
        if "#" in uri or any(c in topic for c in "+\0"):  # '#' would parse as a fragment
            raise EdgevidError(f"{bad} (a topic to publish on has no wildcards + or #)")
        username = unquote(parts.username) if parts.username else env.get(ENV_USERNAME) or None
        password = unquote(parts.password) if parts.password else env.get(ENV_PASSWORD) or None
        if password is not None and not username:
            why = f"a password needs a user name: USER:PASSWORD@ or ${ENV_USERNAME}"
            raise EdgevidError(f"{bad} ({why})")
        tls = parts.scheme == "mqtts"
        ca = ca or ((env.get(ENV_CA) or None) if tls else None)
        if ca is not None and not tls:
            raise EdgevidError(f"--mqtt-ca {ca}: a CA certificate is for mqtts:// (TLS) brokers")
        if ca is not None and not Path(ca).is_file():
            raise EdgevidError(f"--mqtt-ca {ca}: CA certificate file not found")
        return cls(host, port, topic, tls, username, password, ca)


@dataclass(frozen=True)
class MqttConfig:
    outbox: int = 1000  # messages held while the broker is slow or away; beyond: dropped
    connect_timeout_s: float = 5.0  # first connection: fail the run if no broker by then
    flush_s: float = 3.0  # at the end, wait this long for queued messages to be delivered
    qos: int = 1  # 1: at least once, resent after a reconnect
    ca: str | None = None  # CA certificate (PEM) of an mqtts:// broker (else $EDGEVID_MQTT_CA)


class MqttPublisher:
    """Publishes JSON records to a broker without ever blocking the video loop.

    paho's network thread does the I/O and reconnects (every 1-2 s); messages
    wait in paho's bounded queue (``outbox``) while the broker is away and are sent in
    order once it is back. A full outbox drops the new message and counts it.

    ``TOPIC/availability`` (retained) says whether the run is up: ``online`` on every
    connect, ``offline`` at the end, and ``offline`` as the last will, which the broker
    publishes itself when the connection dies without a goodbye (a crash, a SIGKILL, a
    power cut).
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
        self._answered = threading.Event()  # the broker accepted or refused the first connect
        self._refused: str | None = None  # the broker's reason for refusing it
        self._own: set[int] = set()  # ids of "online" messages not yet acknowledged
        self._lock = threading.Lock()
        self._mqtt = mqtt
        self.availability = f"{target.topic}/{AVAILABILITY}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgevid-{os.getpid()}")
        c.max_queued_messages_set(self.config.outbox)
        c.max_inflight_messages_set(min(20, self.config.outbox))
        c.reconnect_delay_set(1, 2)
        c.connect_timeout = self.config.connect_timeout_s
        c.will_set(self.availability, OFFLINE, qos=1, retain=True)
        if target.username:
            c.username_pw_set(target.username, target.password)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c
        try:
            if target.tls:
                c.tls_set(ca_certs=target.ca)
            c.connect(target.host, target.port, keepalive=30)
        except (OSError, ValueError) as e:
            why = " ".join(str(e).split()) or type(e).__name__
            raise EdgevidError(f"{target.uri}: cannot connect to the MQTT broker ({why})") from None
        c.loop_start()
        if not self._answered.wait(self.config.connect_timeout_s) or self._refused:
            self._stop()
            raise EdgevidError(self._refusal())

    def _refusal(self) -> str:
        """The one line for a first connection that did not succeed."""
        if self._refused is None:
            return f"{self.target.uri}: the MQTT broker did not accept the connection"
        if self.target.username:
            hint = f" as user {self.target.username!r}: check the user name and password"
        else:
            hint = (
                ": give credentials in the URI (mqtt://USER:PASSWORD@HOST/TOPIC) or in "
                f"${ENV_USERNAME} / ${ENV_PASSWORD}"
            )
        return f"{self.target.uri}: the MQTT broker refused the connection ({self._refused}){hint}"

    # paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            if not self._answered.is_set():
                self._refused = str(reason_code)
                self._answered.set()
            return
        info = client.publish(self.availability, ONLINE, qos=1, retain=True)
        with self._lock:  # its acknowledgement comes later, in this same thread
            self._own.add(info.mid)
        self._connected.set()
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self._connected.is_set() and not self._closing:
            self.disconnects += 1
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        with self._lock:
            if mid in self._own:
                self._own.discard(mid)
            else:
                self.delivered += 1

    def publish(self, record: dict, subtopic: str = "") -> None:
        """Queue ``record`` (never blocks); counted as dropped when the outbox is full."""
        topic = f"{self.target.topic}/{subtopic}" if subtopic else self.target.topic
        info = self._client.publish(topic, dumps(record).encode(), qos=self.config.qos)
        if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
        else:  # success, or no connection right now: paho resends after reconnecting
            self.sent += 1

    def close(self, flush_s: float | None = None) -> None:
        """Give queued messages ``flush_s`` (default: the config's) to reach the broker,
        then disconnect."""
        deadline = time.monotonic() + (self.config.flush_s if flush_s is None else flush_s)
        while self.delivered < self.sent and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop()

    def _stop(self) -> None:
        self._closing = True
        info = None
        if self._connected.is_set():  # a clean end: say so (the will is only for a lost link)
            info = self._client.publish(self.availability, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(min(1.0, self.config.flush_s))
        self._client.disconnect()
        self._client.loop_stop()
        if info is not None and info.is_published():  # paho's thread has stopped: no race
            self.delivered -= 1  # on_publish counted it as a record

    @property
    def undelivered(self) -> int:
        return max(0, self.sent - self.delivered)

    def report(self) -> str:
        return (
            f"mqtt {self.target.uri}: {self.delivered} delivered, {self.dropped} dropped "
            f"(outbox full), {self.undelivered} not delivered at exit, "
            f"{self.disconnects} disconnects"
        )
