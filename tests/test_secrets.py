"""No secret ever printed, written or published: credentials in a source, a --publish or a
triton:// URI come out as ``***`` everywhere.

The running case reads a real clip over HTTP from a server (started by the test on
127.0.0.1) that demands basic auth, so the credentials are used and the run works; the
records in the JSON logs, the MQTT payloads (a real mosquitto), stdout and stderr are then
searched for the password. The failing cases (a refused or unreachable source, a broker, a
Triton server that is not there, malformed URIs) assert one line, exit code, no password.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgevid.cli import main
from edgevid.core.redact import redact
from tests.conftest import MEDIA
from tests.test_delivery import free_port

CLIP = MEDIA / "carphone_pristine.mp4"
SECRET = "Hunter2-Secret"  # no output may contain it
TOKEN = "tok-9f8e7d"


def invoke(args: list) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and TOKEN not in text, text
        assert "Traceback" not in text, text


def assert_one_line(code: int, out: str, *fragments: str) -> str:
    assert code != 0, out
    assert_clean(out)
    errors = [line for line in out.splitlines() if line.startswith("edgevid: error:")]
    assert len(errors) == 1, out
    for fragment in fragments:
        assert fragment in errors[0], out
    return errors[0]


# --- the function ---------------------------------------------------------------------------
REDACTED = [
    ("rtsp://admin:PW@cam/stream", "rtsp://admin:***@cam/stream"),
    ("rtsp://admin:p@ss@10.0.0.5:554/s", "rtsp://admin:***@10.0.0.5:554/s"),  # '@' in it
    ("mqtt://u:pa:ss@broker:1883/t", "mqtt://u:***@broker:1883/t"),
    ("http://cam/video?user=a&password=PW&x=1", "http://cam/video?user=a&password=***&x=1"),
    ("https://cam/live.m3u8?token=abc123", "https://cam/live.m3u8?token=***"),
    (
        "rtspsrc location=rtsp://a:b@c/d user-id=x user-pw=PW ! appsink",
        "rtspsrc location=rtsp://a:***@c/d user-id=x user-pw=*** ! appsink",
    ),  # fmt: skip
    ("x: rtsp://a:b@c/1 and rtsp://d:e@f/2 lost", "x: rtsp://a:***@c/1 and rtsp://d:***@f/2 lost"),
    ("rtsp://cam/stream", "rtsp://cam/stream"),  # nothing to hide: unchanged
    ("/data/clips/a:b@c.mp4", "/data/clips/a:b@c.mp4"),  # a file name, not a URI
    ("triton://[::1]:8001/prune4", "triton://[::1]:8001/prune4"),
]


@pytest.mark.parametrize("text, expected", REDACTED)
def test_redact(text, expected):
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


# --- a running source with credentials ------------------------------------------------------
class AuthVideoServer:
    """Serves the clip at http://admin:SECRET@127.0.0.1:PORT/clip.mp4 (basic auth, byte
    ranges: what FFmpeg needs to seek to an mp4's index); wrong credentials get 401."""

    def __init__(self, clip: Path) -> None:
        data, expected = clip.read_bytes(), base64.b64encode(f"admin:{SECRET}".encode()).decode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="cam"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = 0, len(data) - 1
                if rng := self.headers.get("Range"):
                    a, b = rng.split("=", 1)[1].split("-", 1)
                    start, end = int(a), int(b) if b else end
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data[start : end + 1])

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AuthVideoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def video_server(media_dir):
    with AuthVideoServer(media_dir / "carphone_pristine.mp4") as server:
        yield server


def test_running_source_with_credentials_never_shows_them(video_server, tiny_onnx, tmp_path):
    """The credentials open the stream (the server checks them) and then appear nowhere:
    the records say ``admin:***``, and so do the MQTT payloads and the summary."""
    from tests.test_mqtt import MOSQUITTO, Broker, Subscriber

    if MOSQUITTO is None:
        pytest.skip("needs the mosquitto broker")
    source = f"http://admin:{SECRET}@127.0.0.1:{video_server.port}/clip.mp4?token={TOKEN}"
    shown = f"http://admin:***@127.0.0.1:{video_server.port}/clip.mp4?token=***"
    log, events = tmp_path / "r.jsonl", tmp_path / "ev.jsonl"
    with Broker(tmp_path) as broker:
        sub = Subscriber(broker.port, "cam")
        try:
            code, out = invoke(["run", "-s", source, "-m", tiny_onnx, "--every", "8",
                                "--max-frames", "40", "--device", "cpu", "--json", log,
                                "--events", events, "--segment-threshold", "0.2",
                                "--segment-release", "0.1",
                                "--publish", f"mqtt://127.0.0.1:{broker.port}/cam"])  # fmt: skip
            assert code == 0, out
            records = [json.loads(x) for x in log.read_text().splitlines()]
            got = sub.wait_for(len(records) + len(events.read_text().splitlines()), timeout=10)
        finally:
            sub.close()
    assert code == 0, out
    assert records and {r["source"] for r in records} == {shown}  # live: frames may drop
    assert [m for t, m, _ in got if t == "cam"] == records
    assert_clean(out, log.read_text(), events.read_text(), *(json.dumps(m) for _, m, _ in got))


def test_wrong_credentials_fail_in_one_line_without_them(video_server, tiny_onnx):
    source = f"http://admin:{SECRET}x@127.0.0.1:{video_server.port}/clip.mp4"
    code, out = invoke(["run", "-s", source, "-m", tiny_onnx, "--device", "cpu", "--timeout", "2"])
    assert_one_line(code, out, f"http://admin:***@127.0.0.1:{video_server.port}/clip.mp4")


# --- failing: one line, never the secret ------------------------------------------------------
def failing_cases() -> list:
    closed = free_port()  # nothing listens there
    return [
        # (run arguments with M for the tiny model, fragment of the one error line)
        (
            ["-s", f"rtsp://admin:{SECRET}@127.0.0.1:{closed}/live", "-m", "M", "--timeout", "2"],
            "rtsp://admin:***@127.0.0.1",
        ),  # fmt: skip
        (
            [
                "-s",
                f"http://127.0.0.1:{closed}/v.mp4?password={SECRET}&token={TOKEN}",
                "-m",
                "M",
                "--timeout",
                "2",
            ],
            "password=***&token=***",
        ),  # fmt: skip
        (
            [
                "-s",
                f"rtspsrc location=rtsp://a:{SECRET}@cam/1 user-pw={SECRET} ! appsink",
                "-m",
                "M",
            ],
            "user-pw=***",
        ),  # fmt: skip
        (
            ["-s", CLIP, "-m", "M", "--publish", f"mqtt://u:{SECRET}@127.0.0.1:{closed}/t"],
            f"mqtt://u@127.0.0.1:{closed}/t: cannot connect",
        ),  # fmt: skip
        (["-s", CLIP, "-m", "M", "--publish", f"mqtt://u:{SECRET}@127.0.0.1:0x9/t"], "u:***@"),
        (
            ["-s", CLIP, "-m", f"triton://u:{SECRET}@127.0.0.1:{closed}/m?timeout=2"],
            f"127.0.0.1:{closed}",
        ),  # fmt: skip
        (["-s", CLIP, "-m", f"triton://u:{SECRET}@[::1/m"], "triton://u:***@[::1/m"),
        (["-s", CLIP, "-m", f"triton://u:{SECRET}@host/m?token={TOKEN}"], "triton://u:***@"),
    ]


CASES = failing_cases()


@pytest.mark.parametrize("args, fragment", CASES, ids=[str(i) for i in range(len(CASES))])
def test_failing_uri_with_credentials_is_one_line_without_them(args, fragment, tiny_onnx,
                                                                tmp_path):  # fmt: skip
    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    if any(str(a).startswith("triton://") for a in args):
        pytest.importorskip("tritonclient.grpc", reason="needs the triton extra")
    code, out = invoke(["run", *[tiny_onnx if a == "M" else a for a in args], "--device", "cpu",
                        "--json", tmp_path / "r.jsonl"])  # fmt: skip
    assert_one_line(code, out, fragment)


def test_no_secret_reaches_the_process_streams(video_server, tiny_onnx, tmp_path):
    """In a real process: what FFmpeg or any library might write to the file descriptors
    themselves (not only Python's sys.stderr) is searched too. The first source opens with
    its credentials, the second is refused; the error and everything else hide both."""
    import subprocess
    import sys

    good = f"http://admin:{SECRET}@127.0.0.1:{video_server.port}/clip.mp4"
    bad = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/live?token={TOKEN}"
    proc = subprocess.run(
        [sys.executable, "-m", "edgevid", "run", "-s", good, "-s", bad, "-m", str(tiny_onnx),
         "--device", "cpu", "--timeout", "2", "--json", str(tmp_path / "r.jsonl")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    line = assert_one_line(proc.returncode, proc.stdout + proc.stderr, "rtsp://admin:***@")
    assert "token=***" in line
