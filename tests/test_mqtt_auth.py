"""`--publish` to a broker that wants credentials and TLS: a real Mosquitto on 127.0.0.1.

The test makes a CA and a server certificate (openssl CLI, 127.0.0.1 as its subject
alternative name) and a password file (mosquitto_passwd), and starts one broker with two
listeners: plain MQTT and MQTT over TLS, both refusing anonymous clients. Each case asserts
the exit code, that what was published arrived (a subscriber with its own credentials), and
that the password appears nowhere: not on stdout, stderr, in the JSON logs or any payload.
The last will is checked by SIGKILLing a run: the broker itself then marks it offline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgevid.runtime.outputs import ENV_CA, ENV_PASSWORD, ENV_USERNAME
from tests.conftest import MEDIA, assert_one_line, invoke
from tests.test_delivery import free_port, wait_for_lines
from tests.test_mqtt import MOSQUITTO, Broker, Subscriber

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or not shutil.which("mosquitto_passwd") or not shutil.which("openssl"),
    reason="needs mosquitto, mosquitto_passwd and openssl",
)
CLIP = MEDIA / "carphone_pristine.mp4"
USER, PASSWORD = "edge", "S3cret-PW!x9"  # the secret no output may contain
RUN = ["--every", "8", "--max-frames", "24", "--device", "cpu"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """ca.crt signs server.crt (subjectAltName IP:127.0.0.1); other.crt is an unrelated CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other"):
        openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt",
                "-days", "2", "-subj", f"/CN=edgevid-test-{name}", cwd=folder)  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
            cwd=folder)  # fmt: skip


class SecureBroker(Broker):
    """Plain listener on ``port``, TLS listener on ``tls_port``; no anonymous clients."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.tls_port = folder, free_port()
        make_certificates(folder)
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), USER, PASSWORD],
                       check=True, capture_output=True)  # fmt: skip
        super().__init__(folder)

    def config(self) -> str:
        d = self.folder
        root = "user root\n" if os.geteuid() == 0 else ""  # else it drops to `mosquitto`
        return (
            f"{root}per_listener_settings false\nallow_anonymous false\n"
            f"password_file {d / 'passwd'}\npersistence false\nlog_dest stderr\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\ncafile {d / 'ca.crt'}\n"
            f"certfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        )


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with SecureBroker(tmp_path_factory.mktemp("broker")) as b:
        yield b


def subscribe(broker: SecureBroker, topic: str) -> Subscriber:
    return Subscriber(broker.port, topic, lambda c: c.username_pw_set(USER, PASSWORD))


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and "S3cret" not in text, text


def assert_one_secret_free_line(code: int, out: str, *fragments: str) -> str:
    """conftest's one error line, its fragments matched in any case, and no secret anywhere."""
    line = assert_one_line(code, out)
    for fragment in fragments:
        assert fragment.lower() in line.lower(), out
    assert_no_secret(out)
    return line


def published_run(broker, tmp_path, tiny_onnx, uri: str, topic: str, env=None, extra=()):
    """Run on the clip publishing to ``uri``; returns (exit, output, log records, payloads)."""
    sub = subscribe(broker, topic)
    try:
        log = tmp_path / "r.jsonl"
        code, out = invoke(["run", "-s", CLIP, "-m", tiny_onnx, *RUN, "--json", log,
                            "--publish", uri, *extra], env)  # fmt: skip
        records = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        got = sub.wait_for(len(records), timeout=10)
    finally:
        sub.close()
    assert_no_secret(out, log.read_text() if log.exists() else "")
    assert_no_secret(*(json.dumps(m) for _, m, _ in got))
    return code, out, records, [m for _, m, _ in got], sub.availability


@pytest.fixture()
def clip():
    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    return CLIP


# --- authenticated: the credentials are used -------------------------------------------------
def test_credentials_in_the_uri_authenticate(broker, clip, tiny_onnx, tmp_path):
    uri = f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{broker.port}/cam/uri"
    code, out, records, got, availability = published_run(broker, tmp_path, tiny_onnx, uri,
                                                          "cam/uri")  # fmt: skip
    assert code == 0, out
    assert len(records) == 3 and got == records  # 24 frames: one result every 8 (7, 15, 23)
    assert f"mqtt://{USER}@127.0.0.1:{broker.port}/cam/uri: 3 delivered" in out
    assert [p for p, _ in availability] == ["online", "offline"]


def test_credentials_from_the_environment_authenticate(broker, clip, tiny_onnx, tmp_path):
    uri = f"mqtt://127.0.0.1:{broker.port}/cam/env"
    env = {ENV_USERNAME: USER, ENV_PASSWORD: PASSWORD}
    code, out, records, got, _ = published_run(broker, tmp_path, tiny_onnx, uri, "cam/env", env)
    assert code == 0, out
    assert len(records) == 3 and got == records


@pytest.mark.parametrize("ca_from", ["option", "environment"])
def test_mqtts_verifies_the_broker_with_the_given_ca(broker, clip, tiny_onnx, tmp_path, ca_from):
    uri = f"mqtts://{USER}:{PASSWORD}@127.0.0.1:{broker.tls_port}/cam/tls"
    ca = str(broker.folder / "ca.crt")
    extra, env = (["--mqtt-ca", ca], None) if ca_from == "option" else ([], {ENV_CA: ca})
    code, out, records, got, _ = published_run(broker, tmp_path, tiny_onnx, uri, "cam/tls",
                                               env, extra)  # fmt: skip
    assert code == 0, out
    assert len(records) == 3 and got == records
    assert f"mqtts://{USER}@127.0.0.1:{broker.tls_port}/cam/tls: 3 delivered" in out


# --- refused: one line, the reason, never the password ---------------------------------------
def test_wrong_password_is_one_line_naming_the_reason(broker, tmp_path):
    uri = f"mqtt://{USER}:wrong-{PASSWORD}@127.0.0.1:{broker.port}/t"
    code, out = invoke(["run", "-s", CLIP, "-m", tmp_path / "m.onnx", "--publish", uri])
    line = assert_one_secret_free_line(code, out, "refused", "not authorized", f"user '{USER}'")
    assert f"mqtt://{USER}@127.0.0.1:{broker.port}/t" in line
    assert not list(tmp_path.iterdir())


def test_wrong_password_from_the_environment_is_not_printed(broker, tmp_path):
    env = {ENV_USERNAME: USER, ENV_PASSWORD: f"{PASSWORD}-old"}
    code, out = invoke(["run", "-s", CLIP, "-m", tmp_path / "m.onnx", "--publish",
                        f"mqtt://127.0.0.1:{broker.port}/t"], env)  # fmt: skip
    assert_one_secret_free_line(code, out, "not authorized")


def test_no_credentials_says_where_to_give_them(broker, tmp_path):
    code, out = invoke(["run", "-s", CLIP, "-m", tmp_path / "m.onnx", "--publish",
                        f"mqtt://127.0.0.1:{broker.port}/t"])  # fmt: skip
    assert_one_secret_free_line(code, out, "not authorized", ENV_USERNAME, ENV_PASSWORD)


def test_mqtts_with_an_unknown_ca_is_refused(broker, tmp_path):
    uri = f"mqtts://{USER}:{PASSWORD}@127.0.0.1:{broker.tls_port}/t"
    code, out = invoke(["run", "-s", CLIP, "-m", tmp_path / "m.onnx", "--publish", uri,
                        "--mqtt-ca", broker.folder / "other.crt"])  # fmt: skip
    assert_one_secret_free_line(code, out, "certificate verify failed", "mqtts://")


def test_mqtts_without_a_ca_uses_the_systems_and_refuses_a_private_one(broker, tmp_path):
    uri = f"mqtts://{USER}:{PASSWORD}@127.0.0.1:{broker.tls_port}/t"
    code, out = invoke(["run", "-s", CLIP, "-m", tmp_path / "m.onnx", "--publish", uri],
                       {ENV_CA: ""})  # fmt: skip
    assert_one_secret_free_line(code, out, "certificate verify failed")


def test_mqtts_to_a_plain_listener_is_one_line(broker, tmp_path):
    uri = f"mqtts://{USER}:{PASSWORD}@127.0.0.1:{broker.port}/t"
    code, out = invoke(["run", "-s", CLIP, "-m", tmp_path / "m.onnx", "--publish", uri,
                        "--mqtt-ca", broker.folder / "ca.crt"])  # fmt: skip
    assert_one_secret_free_line(code, out, "cannot connect")


BAD_URIS = [
    # (--publish, extra args, fragment of the one line)
    (f"mqtt://{USER}:{PASSWORD}@[::1/t", [], "ipv6"),
    (f"mqtt://{USER}:{PASSWORD}@[zz::q]:1883/t", [], "ipv6"),
    (f"mqtt://{USER}:{PASSWORD}@127.0.0.1:99999/t", [], "port"),
    (f"mqtt://:{PASSWORD}@127.0.0.1/t", [], "needs a user name"),
    (f"mqtt://{USER}:{PASSWORD}@127.0.0.1/t", ["--mqtt-ca", "CA"], "mqtts://"),
    (f"mqtts://{USER}:{PASSWORD}@127.0.0.1/t", ["--mqtt-ca", "NOCA"], "not found"),
    (f"amqp://{USER}:{PASSWORD}@127.0.0.1/t", [], "mqtts://"),
    (f"mqtt://{USER}:{PASSWORD}@127.0.0.1/t/#", [], "wildcards"),
]


@pytest.mark.parametrize("uri, extra, fragment", BAD_URIS, ids=[f for *_, f in BAD_URIS])
def test_bad_publish_uri_is_one_line_without_the_password(uri, extra, fragment, broker, tmp_path):
    where = {"CA": broker.folder / "ca.crt", "NOCA": tmp_path / "none.crt"}
    args = ["run", "-s", CLIP, "-m", tmp_path / "m.onnx", "--publish", uri]
    code, out = invoke(args + [where.get(a, a) for a in extra])
    assert_one_secret_free_line(code, out, fragment)


# --- the last will --------------------------------------------------------------------------
@pytest.mark.slow
def test_last_will_marks_a_killed_run_offline(broker, clip, tiny_onnx, tmp_path):
    """SIGKILL gives edgevid no chance to say goodbye: the broker publishes the will
    (retained), so a subscriber that comes later still reads "offline"."""
    log, topic = tmp_path / "r.jsonl", "cam/will"
    sub = subscribe(broker, topic)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgevid", "run", "-s", str(MEDIA / "bikes.mp4"), "-m",
             str(tiny_onnx), "--realtime", "--every", "4", "--json", str(log), "--device",
             "cpu", "--publish", f"mqtt://127.0.0.1:{broker.port}/{topic}"],
            env={**os.environ, ENV_USERNAME: USER, ENV_PASSWORD: PASSWORD},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for_lines(log, proc, n=2)
        assert sub.availability[-1:] == [("online", False)]  # live: not the retained copy
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while sub.availability[-1:] != [("offline", False)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sub.availability[-1:] == [("offline", False)], sub.availability
    finally:
        sub.close()
    later = subscribe(broker, topic)  # a subscriber that comes after: the retained state
    try:
        deadline = time.monotonic() + 5
        while not later.availability and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        later.close()
    assert later.availability == [("offline", True)]
    assert proc.returncode == -signal.SIGKILL
    assert_no_secret(stderr, log.read_text())
