"""Annotated video: label, score bar and fps drawn on each frame; a file or a window.

with VideoSink("out.mp4", fps=25) as sink:       # written atomically on success
    sink.write(annotate(frame, result, fps=31.2))
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgevid._atomic import atomic_path
from edgevid.core._cv import cv2
from edgevid.core.video import check_written
from edgevid.errors import EdgevidError, VideoError

if TYPE_CHECKING:
    from edgevid.runtime.stream import Step, Streamer

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

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame.shape[:2]
            fourcc = {".avi": "MJPG"}.get(self.path.suffix.lower(), "mp4v")
            self._writer = cv2.VideoWriter(
                str(self._tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h)
            )
            if not self._writer.isOpened():
                raise VideoError(f"{self.path}: OpenCV cannot write this container")
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
        if ok and self.frames:
            self._ctx.__exit__(None, None, None)  # rename into place
        else:
            self._ctx.__exit__(_Abort, _Abort(), None)  # remove the temporary file

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def check_display() -> None:
    """Raise a clear error unless OpenCV can open a window on this machine."""
    if "NONE" in _gui_line():
        raise EdgevidError(
            "--show needs OpenCV with a GUI backend; opencv-python-headless has none "
            "(use --output FILE, or install opencv-python on a desktop)"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise EdgevidError("--show needs a display (DISPLAY is not set); use --output FILE")


def _gui_line() -> str:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line
    return ""


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
    """Draws every frame of a step with its stream's latest result, to files and/or a window."""

    def __init__(self, streamer: Streamer, output: str | os.PathLike | None, show: bool) -> None:
        self.streamer = streamer
        self.window = Window() if show else None  # fails first: before any file is created
        lanes = streamer.lanes
        self.sinks = (
            [VideoSink(p, lane.source.fps or 25.0) for p, lane in zip(
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
        return [s.path for s in self.sinks if ok and s.frames]
