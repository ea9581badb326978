"""Annotated video: label, score bar, fps and a timeline of action segments drawn on each
frame; a file (or a series of files), or a window.

with VideoSink("out.mp4", fps=25) as sink:       # written atomically on success
    sink.write(annotate(frame, result, fps=31.2))

A long live run can write its video in parts (``RollingVideoSink``: out-0000.mp4,
out-0001.mp4, ... of N seconds each), each published the moment it is complete, so no
more than N seconds ever wait in a hidden temporary file.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgevid._atomic import atomic_path, remove_dead_temps
from edgevid.core._cv import build_info, cv2
from edgevid.core.video import check_written, open_writer
from edgevid.errors import EdgevidError

if TYPE_CHECKING:
    from edgevid.runtime.segments import Segment
    from edgevid.runtime.streamer import Step, Streamer

FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN, AMBER, WHITE, BLACK = (40, 200, 60), (230, 160, 20), (255, 255, 255), (0, 0, 0)  # RGB


def annotate(
    image: np.ndarray, label: str | None, score: float | None, fps: float | None = None
) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) RGB with the label, a score bar and the fps drawn on."""
    out = image.copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(w, h) / 480)
    thick = max(1, round(scale * 2))
    line = round(28 * scale)
    cv2.rectangle(out, (0, 0), (w, round(line * 1.9)), BLACK, -1)
    if label is None:
        text, font = "warming up...", scale * 0.8
        text_w = cv2.getTextSize(text, FONT, font, thick)[0][0]
    else:
        name, font, text_w = _fit(label, scale * 0.8, thick, w - 12)
        text = f"{name}  {score:.2f}"
    cv2.putText(out, text, (6, line), FONT, font, WHITE, thick, cv2.LINE_AA)
    if score is not None:
        bar_w = round((w - 12) * float(np.clip(score, 0.0, 1.0)))
        color = AMBER if label == "uncertain" else GREEN
        cv2.rectangle(out, (6, round(line * 1.3)), (6 + bar_w, round(line * 1.7)), color, -1)
    if fps is not None:
        txt = f"{fps:.1f} fps"
        (tw, _), _ = cv2.getTextSize(txt, FONT, scale * 0.6, thick)
        if 6 + text_w + 12 + tw + 6 <= w:  # only where it cannot run into the label
            cv2.putText(out, txt, (w - tw - 6, line), FONT, scale * 0.6, WHITE, thick, cv2.LINE_AA)
    return out


TIMELINE_S = 30.0  # seconds of history the timeline strip shows (it starts at 0 and slides)
# one colour per class index (RGB), cycled: distinct on a dark strip
PALETTE = (
    (66, 135, 245), (245, 130, 48), (60, 180, 75), (230, 25, 75), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
)  # fmt: skip


def draw_timeline(
    image: np.ndarray,
    segments: Iterable[Segment],
    now: float,
    labels: list[str],
    span_s: float = TIMELINE_S,
) -> np.ndarray:
    """Draw, in place, a strip along the bottom of ``image`` (H, W, 3) RGB: the segments
    of the last ``span_s`` seconds as coloured blocks named by their label, time running
    left to right (from 0 until ``span_s`` has passed, then sliding), a white tick at now."""
    h, w = image.shape[:2]
    strip = max(10, round(h * 0.08))
    y0 = h - strip
    t1 = max(now, span_s)
    t0 = t1 - span_s

    def x(t: float) -> int:
        return int(round((min(max(t, t0), t1) - t0) / span_s * (w - 1)))

    image[y0:] = (image[y0:].astype(np.uint16) * 2 // 7).astype(np.uint8)  # darken the band
    scale = max(0.3, strip / 30)
    for seg in segments:
        end = now if seg.state == "open" else seg.end
        if end < t0:
            continue
        xa, xb = x(seg.start), max(x(end), x(seg.start) + 1)
        idx = labels.index(seg.label) if seg.label in labels else 0
        cv2.rectangle(image, (xa, y0 + 2), (xb, h - 2), PALETTE[idx % len(PALETTE)], -1)
        cv2.line(image, (xa, y0 + 2), (xa, h - 2), BLACK, 1)  # where one segment meets the next
        (tw, th), _ = cv2.getTextSize(seg.label, FONT, scale, 1)
        if tw + 4 <= xb - xa:
            cv2.putText(image, seg.label, (xa + 2, y0 + (strip + th) // 2), FONT, scale,
                        BLACK, 1, cv2.LINE_AA)  # fmt: skip
    xn = x(now)
    cv2.line(image, (xn, y0), (xn, h - 1), WHITE, 1)
    return image


MIN_FONT = 0.3  # the smallest legible Hershey font scale (about 6 px a character)


@functools.lru_cache(maxsize=64)
def _fit(label: str, font: float, thick: int, width: int) -> tuple[str, float, int]:
    """``label`` and the font scale (at most ``font``) at which "label  0.00" fits ``width``
    pixels, and its width: shrunk down to MIN_FONT, then the label is cut short with "..".
    Per label, not per frame: the two digits of any score are as wide as "0.00"."""

    def size(name: str, f: float) -> int:
        return cv2.getTextSize(f"{name}  0.00", FONT, f, thick)[0][0]

    name, text_w = label, size(label, font)
    while font > MIN_FONT and text_w > width:  # the stroke does not scale: 2-3 steps
        font = max(MIN_FONT, font * min(0.95, width / text_w))
        text_w = size(name, font)
    keep = len(label)
    while text_w > width and keep > 1:
        keep -= 1
        name = label[:keep].rstrip() + ".."
        text_w = size(name, font)
    return name, font, text_w


class _Abort(Exception):
    """Thrown into atomic_path to discard an unfinished video."""


class VideoSink:
    """Frames (H, W, 3) RGB -> a video file, renamed into place only when closed cleanly."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path, self.fps = Path(path), float(fps)
        self._ctx = atomic_path(self.path, check=self._check)
        self._tmp = self._ctx.__enter__()
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0
        self.written: list[Path] = []  # the published file, once closed cleanly

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._writer = open_writer(self._tmp, self.path, self.fps, frame, "container")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _check(self, tmp: Path) -> None:
        check_written(tmp, self.frames, self.path)

    def close(self, ok: bool = True) -> None:
        """Finish the file; ``ok=False`` (or no frames) removes it instead.

        A file the writer could not finish (a full disk) raises VideoError and is removed.
        """
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if ok and self.frames:
            self._ctx.__exit__(None, None, None)  # rename into place
            self.written = [self.path]
        else:
            self._ctx.__exit__(_Abort, _Abort(), None)  # remove the temporary file

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def part_path(path: Path, k: int) -> Path:
    """Part ``k`` of a video written in parts: out-0000.mp4, out-0001.mp4, ..."""
    return path.with_name(f"{path.stem}-{k:04d}{path.suffix}")


def is_part_of(path: Path, name: str) -> bool:
    """Whether the file name ``name`` is ``path`` or one of its parts."""
    return (
        name == path.name
        or re.fullmatch(re.escape(path.stem) + r"-\d{4,}" + re.escape(path.suffix), name)
        is not None
    )


class RollingVideoSink:
    """A video in parts of ``segment_s`` seconds: out-0000.mp4, out-0001.mp4, ...; each part
    is published (renamed into place) as soon as it is full, the last one when closed."""

    def __init__(self, path: str | os.PathLike, fps: float, segment_s: float) -> None:
        if segment_s <= 0:
            raise EdgevidError(f"--output-segment-s must be > 0, got {segment_s}")
        self.path, self.fps = Path(path), float(fps)
        self.per_part = max(1, round(segment_s * self.fps))  # frames per part
        self.frames = 0
        self.written: list[Path] = []
        self._part: VideoSink | None = None

    def part_path(self, k: int) -> Path:
        return part_path(self.path, k)

    def write(self, frame: np.ndarray) -> None:
        if self._part is None:
            self._part = VideoSink(self.part_path(len(self.written)), self.fps)
        self._part.write(frame)
        self.frames += 1
        if self._part.frames >= self.per_part:
            self._close_part(True)

    def _close_part(self, ok: bool) -> None:
        part, self._part = self._part, None
        if part is not None:
            part.close(ok)
            self.written += part.written

    def close(self, ok: bool = True) -> None:
        """Publish the last part (``ok=False``: discard it; finished parts stay, complete)."""
        self._close_part(ok)


def check_display() -> None:
    """Raise a clear error unless OpenCV can open a window on this machine."""
    if "NONE" in build_info("GUI"):
        raise EdgevidError(
            "--show needs OpenCV with a GUI backend; opencv-python-headless has none "
            "(use --output FILE, or install opencv-python on a desktop)"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise EdgevidError("--show needs a display (DISPLAY is not set); use --output FILE")


class Window:
    """An OpenCV window; ``show`` returns False once the user pressed q or Esc."""

    def __init__(self, title: str = "edgevid") -> None:
        check_display()
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, frame: np.ndarray) -> bool:
        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def output_paths(output: str | os.PathLike, n: int) -> list[Path]:
    """One file per stream: out.mp4 for one stream, out_0.mp4, out_1.mp4... for several."""
    p = Path(output)
    return [p] if n == 1 else [p.with_name(f"{p.stem}_{i}{p.suffix}") for i in range(n)]


class Renderer:
    """Draws every frame of a step with its stream's latest result (and, given
    ``segments_of``, the timeline of its segments), to files and/or a window."""

    def __init__(
        self,
        streamer: Streamer,
        output: str | os.PathLike | None,
        show: bool,
        segment_s: float | None = None,
        segments_of: Callable[[int], Iterable[Segment]] | None = None,
    ) -> None:
        self.streamer, self.segments_of = streamer, segments_of
        self.window = Window() if show else None  # fails first: before any file is created
        lanes = streamer.lanes

        def sink(path: Path, fps: float) -> VideoSink | RollingVideoSink:
            return RollingVideoSink(path, fps, segment_s) if segment_s else VideoSink(path, fps)

        for p in output_paths(output, len(lanes)) if output is not None else []:
            remove_dead_temps(p.parent, functools.partial(is_part_of, p))  # a killed run's
        self.sinks = (
            [sink(p, lane.source.fps or 25.0) for p, lane in zip(
                output_paths(output, len(lanes)), lanes, strict=True)]
            if output is not None
            else []
        )  # fmt: skip

    def __call__(self, step: Step) -> bool:
        """Render ``step``; False once the user closed the window (q / Esc)."""
        elapsed = max(self.streamer.stats.elapsed, 1e-6)
        keep_going = True
        for frame in step.frames:
            lane = self.streamer.lanes[frame.stream]
            r = lane.latest
            image = annotate(
                frame.image,
                r.label if r else None,
                r.score if r else None,
                lane.counts.frames_read / elapsed,
            )
            if self.segments_of is not None:
                labels = self.streamer.classifier.labels
                draw_timeline(image, self.segments_of(frame.stream), frame.timestamp, labels)
            if self.sinks:
                self.sinks[frame.stream].write(image)
            if self.window is not None and frame.stream == 0:
                keep_going = self.window.show(image)
        return keep_going

    def close(self, ok: bool = True) -> list[Path]:
        """Finish the files (``ok=False`` discards them); returns the paths written."""
        for sink in self.sinks:
            sink.close(ok)
        if self.window is not None:
            self.window.close()
        return [p for s in self.sinks for p in s.written]
