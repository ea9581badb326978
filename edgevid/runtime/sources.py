"""Where frames come from: one URI -> a :class:`FrameReader`, through a registry of kinds.

    clip.mp4, file:///data/clip.mp4     a video file (every frame, no drops)
    frames/                             a folder of images, in name order
    /dev/video0, v4l2://0, 0            a V4L2 / USB camera
    rtsp://, rtmp://, http(s)://, udp://, tcp://   a network stream (OpenCV's FFmpeg)
    csi://0                             a Jetson CSI camera (nvarguscamerasrc, needs GStreamer)
    "videotestsrc ! videoconvert ! appsink"   any GStreamer pipeline ending in appsink

or frames handed over in Python (:func:`is_frames`): a numpy clip (T, H, W, 3) uint8 RGB, a
``cv2.VideoCapture`` the caller opened (and releases), or any other iterable or generator of
(H, W, 3) uint8 RGB frames, pulled one frame at a time as the loop has room for it.

:func:`resolve_source` finds the kind and returns a :class:`SourceSpec` whose ``open()``
(re)opens the reader; the threaded capture around it is :mod:`edgevid.runtime.capture`.
Every failure to open is a :class:`SourceError` whose message names the URI.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgevid.core._cv import build_info, cv2
from edgevid.core.redact import redact
from edgevid.core.sampling import uniform_indices
from edgevid.core.video import (
    DecodeCount,
    grab_next,
    is_video_file,
    open_counted,
    probe_video,
    read_frames,
)
from edgevid.errors import EdgevidError, SourceError

FRAMES_FPS = 25.0  # frame rate assumed for frames handed over without fps= (and no own rate)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


@dataclass(frozen=True)
class SourceOptions:
    """How sources are opened; the defaults suit a camera next to the device."""

    timeout_s: float = 5.0  # network open/read timeout (FFmpeg), then the stream counts as lost
    folder_fps: float = 25.0  # frame rate assumed for a folder of images
    csi_width: int = 1280  # CSI camera capture width (nvarguscamerasrc)
    csi_height: int = 720  # CSI camera capture height
    csi_fps: int = 30  # CSI camera frame rate


class FrameReader(Protocol):
    """A synchronous frame source. The capture thread is the only caller."""

    fps: float | None  # frames per second as the source reports it, None when unknown

    def read(self) -> np.ndarray | None:
        """The next frame (H, W, 3) uint8 RGB, or None at the end or when the stream is lost."""

    def release(self) -> None: ...


@dataclass(frozen=True)
class SourceSpec:
    uri: str  # what the user typed
    kind: str  # registry key: file, folder, camera, network, csi, gstreamer
    live: bool  # camera/stream: frames may be dropped, loss triggers reconnects
    open: Callable[[], FrameReader]  # opens (or re-opens after a loss) the reader
    reopen: bool = True  # a lost live stream is reopened (False: its end is the end)


# --- readers ---------------------------------------------------------------------------------
class OpenCVReader:
    """cv2.VideoCapture, BGR -> RGB. With a ``count`` (a file), damaged blocks are skipped
    (resync) and :meth:`damage` tells, at the end, whether the file decoded short."""

    def __init__(self, cap: cv2.VideoCapture, count: DecodeCount | None = None) -> None:
        self._cap, self._count = cap, count
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else None  # some streams report 0 or 90000

    def read(self) -> np.ndarray | None:
        if self._count is None:
            ok, bgr = self._cap.read()
        else:
            ok = grab_next(self._cap, self._count)
            bgr = self._cap.retrieve()[1] if ok else None
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def damage(self) -> str | None:
        """After the end: how a damaged or truncated file fell short, else None."""
        return self._count.describe() if self._count is not None and self._count.partial else None

    def release(self) -> None:
        self._cap.release()


class ImageFolderReader:
    """The images of a folder in name order, as a (non-live) stream at ``fps``."""

    def __init__(self, paths: list[Path], fps: float) -> None:
        self._paths, self._next, self.fps = paths, 0, fps

    def read(self) -> np.ndarray | None:
        while self._next < len(self._paths):
            path = self._paths[self._next]
            self._next += 1
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:  # an unreadable image is skipped, like a dropped frame
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return None

    def release(self) -> None:
        self._next = len(self._paths)


class FramesReader:
    """Frames handed over in Python (a numpy clip, a generator), pulled one at a time: the
    capture thread takes the next only when the loop has room for it. Each must be an
    (H, W, 3) uint8 RGB array of its own (it waits in the queue as it was given)."""

    def __init__(self, frames: Iterable[np.ndarray], fps: float, uri: str) -> None:
        self._frames: Iterator[np.ndarray] = iter(frames)
        self.fps, self._uri, self._index = fps, uri, 0

    def read(self) -> np.ndarray | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3
                and frame.dtype == np.uint8):  # fmt: skip
            raise SourceError(
                f"{self._uri}: frame {self._index} is {_describe(frame)}, "
                "not an (H, W, 3) uint8 RGB array"
            )
        self._index += 1
        return frame

    def release(self) -> None:
        self._frames = iter(())


class CaptureReader(OpenCVReader):
    """A ``cv2.VideoCapture`` the caller opened: read like any capture, never released here
    (the caller owns it)."""

    def release(self) -> None:
        pass


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} array of shape {x.shape}"
    return f"a {type(x).__name__}"


def is_frames(source: object) -> bool:
    """True for a source handed over as frames rather than named by a URI: a numpy array, a
    ``cv2.VideoCapture``, or an iterable that is not a str, path, list or tuple (those name
    one source, or several)."""
    if isinstance(source, str | bytes | os.PathLike | int | list | tuple):
        return False
    return isinstance(source, np.ndarray | cv2.VideoCapture | Iterable)


def frames_spec(source: object, fps: float | None = None) -> SourceSpec:
    """The spec of a source handed over as frames (:func:`is_frames`). A clip must be
    (T, H, W, 3) uint8 RGB; a capture plays at its own rate unless ``fps`` is given; a
    capture with no frame count (a camera) is live: frames are dropped if the loop lags."""
    uri = f"<{type(source).__name__}>"
    if isinstance(source, cv2.VideoCapture):
        if not source.isOpened():
            raise SourceError(f"{uri}: the capture is not open")
        reader = CaptureReader(source)
        reader.fps = fps or reader.fps or FRAMES_FPS
        live = source.get(cv2.CAP_PROP_FRAME_COUNT) <= 0

        def opened() -> FrameReader:
            return reader

        return SourceSpec(uri, "capture", live, opened, reopen=False)
    if isinstance(source, np.ndarray) and not (
        source.ndim == 4 and source.shape[3] == 3 and source.dtype == np.uint8
    ):
        raise SourceError(
            f"{uri}: a clip must be a (T, H, W, 3) uint8 RGB array, got {_describe(source)} "
            "(frames one by one: pass an iterator of (H, W, 3) arrays)"
        )
    frames = source  # a clip, or a generator: read once, from its start
    return SourceSpec(
        uri, "frames", False, lambda: FramesReader(frames, fps or FRAMES_FPS, uri), reopen=False
    )


# --- the registry ----------------------------------------------------------------------------
Opener = Callable[[str, SourceOptions], FrameReader]


@dataclass(frozen=True)
class SourceKind:
    name: str  # registry key
    live: bool  # see SourceSpec.live
    matches: Callable[[str], bool]  # does this URI belong to this kind?
    opener: Opener  # (uri, options) -> an open reader, or SourceError


_KINDS: list[SourceKind] = []  # tried in registration order; "file" is the catch-all, last


def register_source(
    name: str, *, live: bool, matches: Callable[[str], bool]
) -> Callable[[Opener], Opener]:
    def deco(opener: Opener) -> Opener:
        _KINDS.append(SourceKind(name, live, matches, opener))
        return opener

    return deco


def resolve_source(
    uri: str | int | os.PathLike | object,
    options: SourceOptions | None = None,
    fps: float | None = None,
) -> SourceSpec:
    """Find the kind of ``uri``; nothing is opened yet (``spec.open()`` does that). Frames
    handed over in Python (:func:`is_frames`) play at ``fps``."""
    if is_frames(uri):
        return frames_spec(uri, fps)
    uri = os.fspath(uri) if not isinstance(uri, int) else str(uri)
    if not uri.strip():
        raise SourceError("empty source: give a file, a folder, /dev/videoN, rtsp://..., csi://0")
    options = options or SourceOptions()
    kind = next(k for k in _KINDS if k.matches(uri))
    return SourceSpec(uri, kind.name, kind.live, lambda: _open(kind, uri, options))


def _open(kind: SourceKind, uri: str, options: SourceOptions) -> FrameReader:
    """Open with ``kind``; a failure's message never shows the URI's credentials."""
    try:
        return kind.opener(uri, options)
    except SourceError as e:
        raise SourceError(redact(str(e))) from None


def open_reader(uri: str | int | os.PathLike, options: SourceOptions | None = None) -> FrameReader:
    """Open ``uri`` now and return its reader (no thread): a SourceError names what failed."""
    return resolve_source(uri, options).open()


def has_gstreamer() -> bool:
    return "YES" in build_info("GStreamer")


def _opened(cap: cv2.VideoCapture, uri: str, why: str) -> OpenCVReader:
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{uri}: {why}")
    return OpenCVReader(cap)


def _is_pipeline(uri: str) -> bool:
    return "!" in uri and "appsink" in uri


@register_source("gstreamer", live=True, matches=_is_pipeline)
def _open_pipeline(uri: str, options: SourceOptions) -> FrameReader:
    if not has_gstreamer():
        raise SourceError(
            f"{uri!r}: GStreamer pipelines need OpenCV built with GStreamer "
            "(this OpenCV has none: on a Jetson use the JetPack OpenCV, not opencv-python)"
        )
    return _opened(cv2.VideoCapture(uri, cv2.CAP_GSTREAMER), uri, "GStreamer pipeline failed")


def csi_pipeline(sensor_id: int, options: SourceOptions) -> str:
    """The nvarguscamerasrc pipeline of a Jetson CSI camera, BGR frames into an appsink."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={options.csi_width},height={options.csi_height},"
        f"framerate={options.csi_fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=2"
    )


@register_source("csi", live=True, matches=lambda u: u.startswith("csi://"))
def _open_csi(uri: str, options: SourceOptions) -> FrameReader:
    sensor = uri.removeprefix("csi://") or "0"
    if not sensor.isdigit():
        raise SourceError(f"{uri}: a CSI camera is csi://N with N the sensor id")
    if not has_gstreamer():
        raise SourceError(
            f"{uri}: CSI cameras need OpenCV built with GStreamer (nvarguscamerasrc); "
            "this OpenCV has none: on a Jetson use the JetPack OpenCV, not opencv-python"
        )
    pipeline = csi_pipeline(int(sensor), options)
    return _opened(cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER), uri, "CSI camera cannot open")


_CAMERA = re.compile(r"^(?:v4l2://)?(?:/dev/video)?(\d+)$")


@register_source("camera", live=True, matches=lambda u: bool(_CAMERA.match(u)))
def _open_camera(uri: str, options: SourceOptions) -> FrameReader:
    index = int(_CAMERA.match(uri).group(1))  # type: ignore[union-attr]
    device = Path(f"/dev/video{index}")
    if os.name == "posix" and Path("/dev").is_dir() and not device.exists():
        raise SourceError(f"{uri}: no such camera ({device} does not exist)")
    api = cv2.CAP_V4L2 if device.exists() else cv2.CAP_ANY
    return _opened(cv2.VideoCapture(index, api), uri, "camera cannot be opened (busy? no access?)")


def _is_network(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() in NETWORK_SCHEMES and "://" in uri


@register_source("network", live=True, matches=_is_network)
def _open_network(uri: str, options: SourceOptions) -> FrameReader:
    ms = int(options.timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
    return _opened(cap, uri, "cannot open the stream (unreachable, refused, or not a video)")


def _local_path(uri: str) -> Path:
    path = Path(uri.removeprefix("file://"))
    try:
        return path.expanduser()
    except (RuntimeError, ValueError):  # "~name" of no such user, a NUL: a literal name
        return path


@register_source("folder", live=False, matches=lambda u: _local_path(u).is_dir())
def _open_folder(uri: str, options: SourceOptions) -> FrameReader:
    folder = _local_path(uri)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise SourceError(f"{uri}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolderReader(paths, options.folder_fps)


@register_source("file", live=False, matches=lambda u: True)
def _open_file(uri: str, options: SourceOptions) -> FrameReader:
    path = _local_path(uri)
    if not path.exists() and "://" in uri:
        raise SourceError(f"{uri}: unknown source scheme (try a file, /dev/videoN, rtsp://...)")
    try:
        return OpenCVReader(*open_counted(path))
    except EdgevidError as e:
        raise SourceError(str(e)) from e


# --- a trimmed clip from a path ----------------------------------------------------------------
def read_clip(source: str | os.PathLike, num_frames: int) -> np.ndarray:
    """``num_frames`` frames spread uniformly over a video file, image folder or any source
    (decoded to its end) -> (T, H, W, 3) uint8 RGB: how a trimmed clip is evaluated."""
    if is_video_file(source) and Path(source).is_file():
        n = probe_video(source).num_frames
        return read_frames(source, uniform_indices(n, num_frames))
    reader = open_reader(source)
    try:
        frames = []
        while (frame := reader.read()) is not None:
            frames.append(frame)
    finally:
        reader.release()
    if not frames:
        raise SourceError(f"{source}: no frames")
    return np.stack([frames[i] for i in uniform_indices(len(frames), num_frames)])
