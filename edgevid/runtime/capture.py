"""Capture in its own thread: a reader feeds a bounded queue the inference loop drains.

Live sources (cameras, network streams, a file with ``realtime=True``) never wait for the
loop: when the queue is full the oldest frame is dropped and counted, so drops happen only
when inference falls behind and the loop always sees the newest frames. Files wait for the
loop instead: no frame is ever dropped. A live stream that is lost is reopened with
exponential backoff for ``reconnect_s`` seconds, then the loop gets a clear SourceError.

    with open_source("rtsp://cam/stream") as src:
        for frame in src:               # Frame(index, timestamp, image (H, W, 3) RGB, ...)
            ...
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edgevid.core.redact import redact
from edgevid.core.video import MAX_PIXELS
from edgevid.errors import EdgevidError, SourceError, VideoError
from edgevid.runtime.sources import FrameReader, SourceOptions, SourceSpec, resolve_source

MAX_BACKOFF_S = 2.0  # longest wait between two reconnect attempts
JOIN_TIMEOUT_S = 0.25  # longest wait for a capture thread to stop (a stop must take < 2 s)


@dataclass
class Frame:
    stream: int  # which source of the run (0-based, in --source order)
    index: int  # frame number in the stream; dropped frames keep their numbers
    timestamp: float  # seconds: media time for files, since capture start for live sources
    image: np.ndarray  # (H, W, 3) uint8 RGB
    decode_s: float  # seconds spent reading + decoding this frame
    captured_at: float  # time.perf_counter() when it left the decoder


@dataclass(frozen=True)
class CaptureConfig:
    queue_size: int = 4  # frames buffered between capture and inference
    realtime: bool = False  # pace a file at its fps and treat it as live (drops allowed)
    reconnect_s: float = 10.0  # keep reopening a lost live stream this long, then fail


class _End:  # queue sentinel: the stream ended normally
    pass


@dataclass
class _Failed:  # queue sentinel: the stream failed with this error
    error: EdgevidError


class Source:
    """A frame source read by a background thread. Opens at construction (errors surface)."""

    def __init__(
        self,
        spec: SourceSpec,
        config: CaptureConfig | None = None,
        *,
        stream: int = 0,
        wake: threading.Event | None = None,
    ) -> None:
        self.spec, self.config, self.stream = spec, config or CaptureConfig(), stream
        self.live = spec.live or self.config.realtime
        self.frames_read = 0  # frames decoded
        self.frames_dropped = 0  # frames decoded but discarded because the queue was full
        self.reconnects = 0  # successful reopenings after a loss
        self.damage: str | None = None  # a file that decoded short of its length: how
        self._reader: FrameReader = spec.open()
        self.fps: float | None = self._reader.fps
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._wake = wake  # set whenever something is queued (lets one loop wait on many)
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"capture-{stream}", daemon=True)
        self._thread.native_blocking = True  # type: ignore[attr-defined]  # see cli.main

    @property
    def uri(self) -> str:
        """The source as printed and recorded: its credentials redacted (spec.uri opens it)."""
        return redact(self.spec.uri)

    # --- consumer side ------------------------------------------------------------------------
    def start(self) -> Source:
        if self._thread.ident is None and not self._stop.is_set():  # start once
            self._thread.start()
        return self

    def get(self, timeout: float | None = 0.0) -> Frame | None:
        """The next frame; None if none arrived within ``timeout`` (None: wait forever) or
        the stream has ended (see :attr:`done`). Raises the stream's error, if it failed."""
        with self._cond:
            if not self._queue and not self._done:
                self._cond.wait_for(lambda: self._queue, timeout)
            if not self._queue:
                return None
            item = self._queue.popleft()
            self._cond.notify_all()
        if isinstance(item, Frame):
            return item
        self._done = True
        if isinstance(item, _Failed):
            raise item.error
        return None

    @property
    def done(self) -> bool:
        """True once the end (or failure) of the stream has been taken from the queue."""
        return self._done

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while not self._done:
            frame = self.get(timeout=None)
            if frame is not None:
                yield frame

    def close(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Stop the capture thread (it releases the reader) and wait ``timeout`` for it."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is None:  # never started: release here (twice is harmless)
            self._reader.release()
        else:  # a reader blocked in FFmpeg is left to its (daemon) thread, which releases
            self._thread.join(timeout=timeout)  # it when its read timeout ends

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- capture thread -----------------------------------------------------------------------
    def _run(self) -> None:
        reader, index = self._reader, 0
        started = time.perf_counter()
        lost: _Loss | None = None  # since the stream last gave a frame, while it gives none
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                image = reader.read()
                t1 = time.perf_counter()
                if image is None:
                    if not (self.spec.live and self.spec.reopen):
                        if index == 0:
                            raise VideoError(
                                f"{self.uri}: no frame could be decoded (corrupt or truncated?)"
                            )
                        self.damage = getattr(reader, "damage", lambda: None)()
                        break
                    reader.release()
                    lost = lost or _Loss(time.monotonic() + self.config.reconnect_s)
                    reader = self._reopen(lost)
                    continue
                lost = None  # a frame: the stream is back
                if index == 0 and image.shape[0] * image.shape[1] > MAX_PIXELS:
                    h, w = image.shape[:2]
                    limit = f"{MAX_PIXELS // 1_000_000} Mpixel at most"
                    raise SourceError(f"{self.uri}: {w}x{h} frames are too large ({limit})")
                decode_s = t1 - t0
                if self.config.realtime and self.fps:  # pace: frame i leaves at i / fps
                    self._stop.wait(max(0.0, started + index / self.fps - time.perf_counter()))
                    t1 = time.perf_counter()
                stamp = index / self.fps if (self.fps and not self.spec.live) else t1 - started
                self._put(Frame(self.stream, index, stamp, image, decode_s, t1))
                index += 1
            self._put(_End())
        except EdgevidError as e:
            self._put(_Failed(e))
        except Exception as e:  # noqa: BLE001 (a decoder failure must end the stream, not hang it)
            self._put(_Failed(SourceError(f"{self.uri}: capture failed ({type(e).__name__}: {e})")))
        finally:
            reader.release()

    def _put(self, item: object) -> None:
        with self._cond:
            if isinstance(item, Frame):
                self.frames_read += 1
                if self.live:
                    while len(self._queue) >= self.config.queue_size:
                        self._queue.popleft()
                        self.frames_dropped += 1
                else:
                    self._cond.wait_for(
                        lambda: len(self._queue) < self.config.queue_size or self._stop.is_set()
                    )
            self._queue.append(item)
            self._cond.notify_all()
        if self._wake is not None:
            self._wake.set()

    def _reopen(self, lost: _Loss) -> FrameReader:
        """Reopen a lost live stream with exponential backoff, or raise SourceError once
        ``reconnect_s`` has passed since its last frame. A stream that opens but gives no
        frame comes back here with the same ``lost``: it backs off, never spins."""
        while not self._stop.is_set():
            if lost.attempts:  # the last attempt failed or gave no frame: wait first
                remaining = lost.deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(
                        f"{self.uri}: stream lost and not back after {self.config.reconnect_s:g} s"
                    )
                if self._stop.wait(min(lost.delay, remaining)):
                    break
                lost.delay = min(2 * lost.delay, MAX_BACKOFF_S)
            lost.attempts += 1
            try:
                reader = self.spec.open()
                self.reconnects += 1
                return reader
            except SourceError:
                pass
        return _Closed()


@dataclass
class _Loss:
    """A live stream giving no frames: when reconnecting gives up, the next wait, tries."""

    deadline: float  # time.monotonic() after which the stream counts as gone
    delay: float = 0.1  # the next wait between two attempts (doubles, up to MAX_BACKOFF_S)
    attempts: int = 0  # reopenings tried since the last frame


class _Closed:
    """The reader of a source closed while reconnecting: reads nothing."""

    fps = None

    def read(self) -> np.ndarray | None:
        return None

    def release(self) -> None:
        pass


def open_source(
    uri: str | int | os.PathLike | object,
    config: CaptureConfig | None = None,
    options: SourceOptions | None = None,
    *,
    stream: int = 0,
    wake: threading.Event | None = None,
    fps: float | None = None,
) -> Source:
    """Open ``uri`` (any kind in :mod:`edgevid.runtime.sources`, frames handed over in Python
    included, played at ``fps``) as a threaded Source."""
    return Source(resolve_source(uri, options, fps), config, stream=stream, wake=wake)
