"""Sources: the URI registry, threaded capture of files and folders, and a live MJPEG stream
served on 127.0.0.1 by the test (drops, a lost connection and reconnect, a stream that never
comes back). Every server and thread a test starts is stopped by the test."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time

import numpy as np
import pytest

from edgevid.core._cv import cv2
from edgevid.core.video import iter_frames, write_video
from edgevid.errors import EdgevidError, SourceError
from edgevid.runtime.capture import CaptureConfig, open_source
from edgevid.runtime.sources import (
    SourceOptions,
    csi_pipeline,
    has_gstreamer,
    open_reader,
    resolve_source,
)


class MjpegServer:
    """HTTP multipart/x-mixed-replace JPEG stream on 127.0.0.1; frame i is gray level 4*i.

    Each connection gets ``per_connection`` frames, then is closed (a dropped connection);
    after ``max_connections`` connections the server closes its socket (a stream that never
    comes back: reconnects are refused).
    """

    def __init__(self, per_connection: int = 1000, max_connections: int = 1000, fps: float = 100):
        self.per_connection, self.max_connections, self.fps = per_connection, max_connections, fps
        self.connections = 0
        self.sent = 0  # frames sent over all connections; frame numbers continue across them
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for _ in range(server.per_connection):
                    if server._stop.is_set():
                        return
                    img = np.full((48, 64, 3), (4 * server.sent) % 256, np.uint8)
                    jpg = cv2.imencode(".jpg", img)[1].tobytes()
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}"
                    try:
                        self.wfile.write(head.encode() + b"\r\n\r\n" + jpg + b"\r\n")
                    except OSError:  # the client went away
                        return
                    server.sent += 1
                    time.sleep(1 / server.fps)
                if server.connections >= server.max_connections:
                    threading.Thread(target=server.stop, daemon=True).start()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._closed = False

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: new connections are refused."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._thread.join(timeout=5)


def gray(frame: np.ndarray) -> int:
    return int(round(frame.mean()))


FAST = SourceOptions(timeout_s=2.0)


# --- the registry ----------------------------------------------------------------------------
URI_KINDS = [
    ("clip.mp4", "file", False),
    ("file:///data/clip.mp4", "file", False),
    ("/dev/video0", "camera", True),
    ("v4l2://1", "camera", True),
    ("v4l2:///dev/video2", "camera", True),
    ("0", "camera", True),
    ("rtsp://10.0.0.2:554/stream", "network", True),
    ("rtmp://host/live/key", "network", True),
    ("http://127.0.0.1:8080/video.mjpg", "network", True),
    ("https://host/cam", "network", True),
    ("udp://0.0.0.0:5000", "network", True),
    ("tcp://host:9000", "network", True),
    ("csi://0", "csi", True),
    ("videotestsrc ! videoconvert ! appsink", "gstreamer", True),
]


@pytest.mark.parametrize(("uri", "kind", "live"), URI_KINDS)
def test_uri_kinds(uri, kind, live):
    spec = resolve_source(uri)
    assert (spec.kind, spec.live, spec.uri) == (kind, live, uri)


def test_every_registered_kind_is_tested():
    from edgevid.runtime.sources import _KINDS

    tested = {kind for _, kind, _ in URI_KINDS} | {"folder"}  # folder: test_folder_kind
    assert {k.name for k in _KINDS} == tested


def test_folder_kind(tmp_path):
    assert resolve_source(tmp_path).kind == "folder"
    assert resolve_source(f"file://{tmp_path}").kind == "folder"


# --- clear errors ----------------------------------------------------------------------------
def test_missing_camera_names_the_device():
    with pytest.raises(SourceError, match=r"/dev/video99: no such camera"):
        open_reader("/dev/video99")
    with pytest.raises(SourceError, match=r"v4l2://98: no such camera"):
        open_reader("v4l2://98")


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV has GStreamer")
@pytest.mark.parametrize("uri", ["csi://0", "videotestsrc ! videoconvert ! appsink"])
def test_gstreamer_sources_without_gstreamer(uri):
    with pytest.raises(SourceError, match="GStreamer"):
        open_reader(uri)


def test_bad_files(tmp_path):
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "notes.txt").write_text("not a video\n")
    with pytest.raises(SourceError, match="missing.mp4: no such file"):
        open_reader(tmp_path / "missing.mp4")
    for name in ("noise.mp4", "notes.txt"):
        with pytest.raises(SourceError, match=f"{name}: cannot be opened as a video"):
            open_reader(tmp_path / name)
    with pytest.raises(SourceError, match="folder has no images"):
        open_reader(tmp_path)
    with pytest.raises(SourceError, match="unknown source scheme"):
        open_reader("foo://bar")


def test_unreachable_stream_fails_fast_and_names_it():
    with MjpegServer() as srv:
        url = srv.url
    t0 = time.perf_counter()
    with pytest.raises(SourceError, match=f"{url}: cannot open the stream"):
        open_reader(url, FAST)
    assert time.perf_counter() - t0 < FAST.timeout_s + 1


# --- files and folders -----------------------------------------------------------------------
def test_file_source_yields_every_frame_in_order(media_dir):
    path = media_dir / "carphone_pristine.mp4"
    want = list(iter_frames(path))
    with open_source(path, CaptureConfig(queue_size=2)) as src:
        time.sleep(0.2)  # the consumer is slow: a file still loses nothing
        got = list(src)
    assert len(got) == len(want) == 120
    assert [f.index for f in got] == list(range(120))
    assert src.frames_dropped == 0 and src.fps == pytest.approx(29.97, rel=1e-3)
    assert got[30].timestamp == pytest.approx(30 / 29.97)
    for f in (got[0], got[77]):
        np.testing.assert_array_equal(f.image, want[f.index])
        assert f.decode_s > 0


def test_realtime_file_is_paced_and_may_drop(synth_root):
    clip = next(synth_root.rglob("*.mp4"))  # 18..30 frames at 15 fps
    with open_source(clip, CaptureConfig(queue_size=1, realtime=True)) as src:
        t0 = time.perf_counter()
        first = src.get(timeout=5)
        time.sleep(0.5)  # fall behind: ~7 frames arrive meanwhile, the queue holds one
        rest = list(src)
        elapsed = time.perf_counter() - t0
    n = 1 + len(rest) + src.frames_dropped
    assert first.index == 0 and src.frames_dropped >= 3 and n == src.frames_read
    assert elapsed >= (n - 1) / src.fps * 0.9  # paced at the file's fps, not as fast as decoded


def test_image_folder_source(tmp_path):
    for i in (3, 1, 2):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), np.full((20, 30, 3), 10 * i, np.uint8))
    (tmp_path / "readme.txt").write_text("ignored")
    with open_source(tmp_path) as src:
        frames = list(src)
    assert [gray(f.image) for f in frames] == [10, 20, 30]
    assert not src.live and src.fps == 25.0


def test_truncated_file_with_no_decodable_frame(tmp_path):
    good = write_video(tmp_path / "a.avi", np.zeros((5, 32, 32, 3), np.uint8), fps=5)
    data = good.read_bytes()
    bad = tmp_path / "cut.avi"
    bad.write_bytes(data[:400] + b"\x00" * 50)  # header only
    try:
        src = open_source(bad)
    except EdgevidError:
        return  # refused at open: also a clear error
    with src, pytest.raises(EdgevidError, match="cut.avi"):
        list(src)


# --- a live stream on 127.0.0.1 --------------------------------------------------------------
def test_live_stream_frames_arrive_in_order():
    with MjpegServer(fps=200) as srv, open_source(srv.url, options=FAST) as src:
        frames = [src.get(timeout=5) for _ in range(20)]
    assert src.live and all(f is not None for f in frames)
    levels = [gray(f.image) for f in frames]
    assert levels == sorted(levels) and levels[-1] - levels[0] >= 4 * 19 - 4
    assert [f.index for f in frames] == list(range(20)) and src.frames_dropped == 0


def test_live_stream_drops_oldest_when_the_consumer_falls_behind():
    with MjpegServer(fps=200) as srv, open_source(srv.url, CaptureConfig(queue_size=2), FAST) as s:
        first = s.get(timeout=5)
        time.sleep(0.5)  # inference "falls behind": ~100 frames arrive, 2 can wait
        late = s.get(timeout=5)
    assert s.frames_dropped >= 20  # >= 50 on an idle machine
    # The loop sees recent frames, not stale ones. (The first may already not be frame 0:
    # on a loaded machine the queue can overflow before the first get.)
    assert late.index > first.index + 20


def test_live_stream_reconnects_after_a_dropped_connection():
    cfg = CaptureConfig(reconnect_s=5.0)
    with MjpegServer(per_connection=15, fps=200) as srv, open_source(srv.url, cfg, FAST) as src:
        frames = [src.get(timeout=5) for _ in range(40)]
    assert all(f is not None for f in frames)
    assert src.reconnects >= 2 and srv.connections >= 3
    levels = [gray(f.image) for f in frames]
    assert levels == sorted(levels)  # the frames after each reconnect continue the stream


def test_live_stream_that_never_returns_is_a_clear_error():
    cfg = CaptureConfig(reconnect_s=1.0)
    with MjpegServer(per_connection=10, max_connections=1, fps=200) as srv:
        src = open_source(srv.url, cfg, FAST)
        with src:
            t0 = time.perf_counter()
            got = []
            with pytest.raises(SourceError, match=r"stream lost and not back after 1 s"):
                for frame in src:
                    got.append(frame)
            waited = time.perf_counter() - t0
    assert len(got) == 10 and src.reconnects == 0
    assert 1.0 <= waited < 1.0 + 2 * FAST.timeout_s
    assert not src._thread.is_alive()


def test_csi_pipeline_for_jetson():
    p = csi_pipeline(1, SourceOptions(csi_width=1920, csi_height=1080, csi_fps=30))
    assert p.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=1920,height=1080,framerate=30/1" in p
    assert p.endswith("appsink drop=true max-buffers=2")


def test_a_reader_that_crashes_ends_the_stream_with_an_error():
    from edgevid.runtime.capture import Source
    from edgevid.runtime.sources import SourceSpec

    class Crashing:
        fps = 10.0

        def __init__(self) -> None:
            self.reads = 0

        def read(self):
            self.reads += 1
            if self.reads > 3:
                raise RuntimeError("decoder exploded")
            return np.zeros((8, 8, 3), np.uint8)

        def release(self) -> None:
            pass

    with Source(SourceSpec("crash://", "test", False, Crashing)) as src:
        got = []
        with pytest.raises(SourceError, match=r"crash://: capture failed \(RuntimeError: decoder"):
            for frame in src:  # never hangs: the failure reaches the consumer
                got.append(frame)
    assert len(got) == 3
