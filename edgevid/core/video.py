"""Video files: probe, decode selected frames, write. OpenCV only (no torch).

Frames come out as uint8 RGB arrays of shape (H, W, 3); clips as (T, H, W, 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid._atomic import atomic_path
from edgevid.core._cv import cv2
from edgevid.errors import VideoError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
MAX_PIXELS = 8192 * 8192  # larger frames are refused rather than exhausting memory


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int  # as reported by the container; decoding may yield a few less
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _open(path: str | os.PathLike) -> cv2.VideoCapture:
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such file")
    if not p.is_file():
        raise VideoError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file")
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{p}: cannot be opened as a video (corrupt or not a video)")
    return cap


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's frame count, fps and size without decoding it all.

    Raises :class:`VideoError` for a missing, empty, corrupt or zero-frame file.
    """
    cap = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if n <= 0:  # some containers do not store a count: count by demuxing
            n = 0
            while cap.grab():
                n += 1
    finally:
        cap.release()
    if n <= 0 or w <= 0 or h <= 0:
        raise VideoError(f"{path}: video has no frames")
    if w * h > MAX_PIXELS:
        raise VideoError(f"{path}: resolution {w}x{h} is larger than edgevid supports")
    return VideoInfo(str(path), n, fps if fps > 0 else 25.0, w, h)


RESYNC_PACKETS = 64  # undecodable packets in a row passed over before a file is given up on


@dataclass
class DecodeCount:
    """How much of a file decoded, against what its container declares."""

    path: str
    expected: int  # frames the container declares (0: it does not say)
    decoded: int = 0  # frames decoded
    skipped: int = 0  # undecodable packets passed over inside the file (damaged blocks)

    @property
    def partial(self) -> bool:
        """Damaged or truncated: packets were skipped, or it ended well short of its count
        (a container may over-report its length by a frame or two)."""
        return self.skipped > 0 or (self.expected > 0 and self.decoded < self.expected - 2)

    def describe(self) -> str:
        plural = "s" * (self.skipped != 1)
        skipped = f", {self.skipped} damaged packet{plural} skipped" if self.skipped else ""
        return (
            f"{self.path}: decoded {self.decoded} of the {self.expected} frames its container "
            f"declares{skipped} (damaged or truncated file)"
        )


def grab_next(cap: cv2.VideoCapture, count: DecodeCount) -> bool:
    """``cap.grab()`` that resyncs past a damaged block: while the container declares more
    frames, up to RESYNC_PACKETS undecodable packets in a row are skipped (FFmpeg resumes at
    the next decodable one) before the file counts as ended."""
    misses = 0
    while not cap.grab():
        misses += 1
        if misses > RESYNC_PACKETS or count.decoded + misses >= max(count.expected, 1):
            return False
    count.skipped += misses
    count.decoded += 1
    return True


def open_counted(path: str | os.PathLike) -> tuple[cv2.VideoCapture, DecodeCount]:
    """An open capture and the count to decode it against."""
    cap = _open(path)
    return cap, DecodeCount(str(path), max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))))


def read_frames(
    path: str | os.PathLike, indices: Sequence[int], partial: list[str] | None = None
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) -> (T, H, W, 3) RGB.

    Decodes sequentially once up to the largest index, converting only the frames asked
    for, resyncing past damaged blocks. Indices past the real end get the last decoded
    frame (the same padding a short clip gets); a file that decoded short of its declared
    length is described in ``partial`` (when given).
    """
    if len(indices) == 0:
        raise ValueError("read_frames needs at least one index")
    wanted = sorted(set(int(i) for i in indices))
    if wanted[0] < 0:
        raise ValueError(f"negative frame index {wanted[0]}")
    got: dict[int, np.ndarray] = {}
    last: np.ndarray | None = None
    cap, count = open_counted(path)
    try:
        pos, k = 0, 0
        while k < len(wanted) and grab_next(cap, count):
            pos = count.decoded + count.skipped - 1  # the frame's place in the file
            while k < len(wanted) and wanted[k] < pos:  # lost in a damaged block
                k += 1
            if k < len(wanted) and pos == wanted[k]:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    break
                last = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                while k < len(wanted) and wanted[k] == pos:
                    got[pos] = last
                    k += 1
    finally:
        cap.release()
    if last is None:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated video)")
    if partial is not None and count.partial and (count.skipped or k < len(wanted)):
        partial.append(count.describe())  # damaged inside, or short of the frames asked for
    return np.stack([got[i] if i in got else _nearest(got, i, last) for i in map(int, indices)])


def _nearest(got: dict[int, np.ndarray], i: int, last: np.ndarray) -> np.ndarray:
    """The decoded frame closest before ``i`` (a frame lost in a damaged block), else last."""
    before = [j for j in got if j <= i]
    return got[max(before)] if before else last


def iter_frames(path: str | os.PathLike, partial: list[str] | None = None) -> Iterator[np.ndarray]:
    """Yield every decodable frame of a file as (H, W, 3) RGB, resyncing past damaged
    blocks; a file that decoded short of its declared length is described in ``partial``."""
    cap, count = open_counted(path)
    try:
        while grab_next(cap, count):
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if partial is not None and count.partial:
        partial.append(count.describe())


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode a whole file -> ((N, H, W, 3) RGB, fps)."""
    info = probe_video(path)
    frames = list(iter_frames(path))
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (corrupt or truncated video)")
    return np.stack(frames), info.fps


def check_written(path: Path, frames: int, name: str | os.PathLike | None = None) -> None:
    """Re-open a video just written and require ``frames`` frames in its container.

    A writer that hit a full disk leaves an .mp4 without its index (moov atom), which no
    player opens; OpenCV's writer does not report that, so every written video is checked
    before it is published. ``name`` is the path the user asked for (``path`` may be a
    temporary one).
    """
    name = name or path
    count = mp4_sample_count(path) if path.suffix.lower() in (".mp4", ".mov", ".m4v") else None
    if count is None:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
        finally:
            cap.release()
    if count < 0:
        raise VideoError(
            f"{name}: the video writer failed (the file does not open; disk full?), not written"
        )
    if count < frames:
        raise VideoError(
            f"{name}: the video writer failed ({count} of {frames} frames in the file; "
            "disk full?), not written"
        )


MP4_PATH = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsz")  # boxes down to the sizes


def mp4_sample_count(path: Path) -> int | None:
    """Frames in an MP4 written by edgevid (one video track), from its index (stsz box), or
    -1 when it has no index (a writer cut short); None if it is no MP4 this can read.

    Pure Python, so no FFmpeg open: OpenCV serialises every FFmpeg open on one lock, and
    a capture thread waiting for a lost stream holds it for its whole open timeout."""
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            for name in MP4_PATH:
                while True:  # the boxes of this level, up to ``end``
                    head = f.read(8)
                    if len(head) < 8:
                        return -1
                    size, kind = int.from_bytes(head[:4], "big"), head[4:]
                    start = f.tell() - 8
                    if size == 1:  # a 64-bit size follows
                        size = int.from_bytes(f.read(8), "big")
                    if size < 8 or start + size > end:
                        return -1  # cut short: the writer did not finish
                    if kind == name:
                        end = start + size
                        break
                    f.seek(start + size)
            body = f.read(12)  # version+flags, sample size, sample count
            return int.from_bytes(body[8:12], "big") if len(body) == 12 else -1
    except OSError:
        return None


def open_writer(tmp: Path, path: Path, fps: float, frame: np.ndarray, what: str) -> cv2.VideoWriter:
    """An OpenCV writer at ``tmp`` for frames like ``frame`` (``path``'s suffix picks the codec:
    .avi MJPG, else MPEG-4 Part 2), or a VideoError naming ``path`` and ``what`` failed."""
    h, w = frame.shape[:2]
    fourcc = {".avi": "MJPG"}.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        writer.release()
        raise VideoError(f"{path}: OpenCV cannot write this {what}")
    return writer


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, *, rgb: bool = True
) -> Path:
    """Write frames (H, W, 3) uint8 to ``path`` (.mp4: MPEG-4 Part 2, .avi: MJPG), atomically.

    The file is re-opened and its frames counted before it replaces ``path``.
    """
    path = Path(path)
    written = 0
    with atomic_path(path, check=lambda tmp: check_written(tmp, written, path)) as tmp:
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    why = "file (unsupported container, or the folder is full or read-only)"
                    writer = open_writer(tmp, path, fps, frame, why)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if rgb else frame)
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise VideoError(f"{path}: no frames to write")
    return path
