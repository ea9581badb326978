"""One progress display for every long command: bars on a terminal, plain lines in a log.

On a TTY, :func:`bar` is a tqdm bar (nested bars stack). When stderr is not a terminal (a
log file, CI, ``docker logs``), it writes no escape codes: one plain line per bar at most
every ``EVERY_S`` seconds, and a last one when it closes, e.g.::

    training: 3/30 (10%) val_acc=0.412 [42 s]

:func:`heartbeat` covers a step that has no count (exporting a graph): a bar with the elapsed
time on a TTY, a line every ``EVERY_S`` seconds otherwise. Both go to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

EVERY_S = 10.0  # seconds between plain progress lines when stderr is not a terminal
_quiet = False  # `edgevid -q`: no bars, no heartbeats


def set_quiet(quiet: bool) -> None:
    """Turn every bar and heartbeat off (``edgevid -q``) or back on."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class PlainBar:
    """tqdm's interface (iterate, update, set_postfix, close, write) as periodic plain lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", initial: int = 0, disable: bool = False,
                 **_: Any) -> None:  # fmt: skip
        self.iterable, self.desc, self.n, self.disable = iterable, desc, initial, disable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.postfix = ""
        self.started = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= EVERY_S:
            self._print()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n:
                self._print()

    def _print(self) -> None:
        self._last = time.monotonic()
        if self.disable:
            return
        done = (
            f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)"
            if self.total
            else (f"{self.n}")
        )
        extra = f" {self.postfix}" if self.postfix else ""
        elapsed = time.monotonic() - self.started
        print(f"{self.desc}: {done}{extra} [{elapsed:.0f} s]", file=sys.stderr, flush=True)

    @staticmethod
    def write(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def bar(iterable: Iterable | None = None, **kw: Any):
    """A progress bar: tqdm on a terminal, :class:`PlainBar` lines otherwise."""
    if _quiet:
        kw["disable"] = True
    if is_terminal():
        from tqdm.auto import tqdm

        return tqdm(iterable, **kw)
    return PlainBar(iterable, **kw)


def write(line: str) -> None:
    """A message line that does not break the bars."""
    if is_terminal():
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        PlainBar.write(line)


@contextlib.contextmanager
def heartbeat(what: str, enabled: bool = True) -> Iterator[None]:
    """Progress for a step without a count: the elapsed time, while ``what`` runs."""
    if not enabled or _quiet:
        yield
        return
    stop = threading.Event()
    started = time.monotonic()
    tty = is_terminal()
    if tty:
        from tqdm.auto import tqdm

        shown = tqdm(desc=what, bar_format="{desc}: {elapsed}", leave=False, file=sys.stderr)
    period = 1.0 if tty else EVERY_S

    def tick() -> None:
        while not stop.wait(period):
            if tty:
                shown.refresh()
            else:
                elapsed = time.monotonic() - started
                print(f"{what}: running [{elapsed:.0f} s]", file=sys.stderr, flush=True)

    thread = threading.Thread(target=tick, name="edgevid-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if tty:
            shown.close()
