"""Health while a run goes on (edgevid/runtime/health.py): status lines and records every
--status-s, /metrics and /healthz scraped over HTTP from a real `edgevid run` process, a
stalled live stream turning /healthz to 503, and the clear errors of the options."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import check_record, read_records, with_stop_signals
from tests.test_delivery import free_port, wait_for_lines
from tests.test_sources import MjpegServer
from tests.test_stream import assert_clear_error, edgevid

prom_parser = pytest.importorskip(
    "prometheus_client.parser", reason="needs the metrics extra (prometheus-client)"
)
pytest.importorskip("onnx", reason="test graphs need the export extra (onnx)")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{stream="0"}': value} (the source label left out)."""
    out = {}
    for family in prom_parser.text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k == "stream")
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def start_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgevid", "run", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=with_stop_signals,
    )  # fmt: skip


def healthcheck(port: int) -> subprocess.CompletedProcess:
    return edgevid("healthcheck", "--port", str(port))


def wait_until(check, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.slow
def test_metrics_and_healthz_scraped_during_a_run(tiny_onnx, media_dir, tmp_path):
    """A paced file (25 fps, 10 s): /healthz 200, /metrics counting frames, inferences and
    latencies as they grow; a status record beside the results and a status line on stderr
    every 0.5 s; the backend named on stderr before the first result."""
    log, port = tmp_path / "r.jsonl", free_port()
    proc = start_run("-s", str(media_dir / "bikes.mp4"), "-m", str(tiny_onnx), "--realtime",
                     "--json", str(log), "--status-s", "0.5",
                     "--metrics-port", str(port))  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for_lines(log, proc, n=3)
    assert get(f"{base}/healthz") == (200, '{"status": "ok"}\n')
    check = healthcheck(port)  # the images' HEALTHCHECK
    assert (check.returncode, check.stdout) == (0, '{"status": "ok"}\n'), check.stderr
    first = samples(get(f"{base}/metrics")[1])
    time.sleep(1.0)
    code, text = get(f"{base}/metrics")
    second = samples(text)
    assert code == 200 and get(f"{base}/nothing")[0] == 404
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    s = '{stream="0"}'
    assert second[f"edgevid_frames_read_total{s}"] > first[f"edgevid_frames_read_total{s}"] > 0
    assert second[f"edgevid_inferences_total{s}"] > first[f"edgevid_inferences_total{s}"] >= 2
    observed = second[f"edgevid_latency_seconds_count{s}"]  # the step in flight may lag by one
    assert 0 <= second[f"edgevid_inferences_total{s}"] - observed <= 1
    assert second[f"edgevid_stream_up{s}"] == 1 and second["edgevid_healthy"] == 1
    assert f"edgevid_frames_dropped_total{s}" in second and "edgevid_info" in second
    assert second["process_resident_memory_bytes"] > 0
    records = read_records(log)  # every line against the schema of its type
    status = [r for r in records if r["type"] == "status"]
    results = [r for r in records if r["type"] == "result"]
    assert len(status) >= 2 and len(results) >= 5
    assert all(r["healthy"] and r["streams"][0]["up"] for r in status)
    assert 0 < status[-1]["streams"][0]["fps"] <= 30  # paced at 25 fps
    assert status[-1]["backend"] == "onnxruntime[CPUExecutionProvider]"
    lines = stderr.splitlines()
    assert lines[0] == "edgevid: model tiny-prune8.onnx on onnxruntime[CPUExecutionProvider]"
    assert sum(line.startswith("edgevid: status ") for line in lines) == len(status)
    assert re.search(r"\[0\] \d+\.\d fps, \d+ dropped, last result \d+\.\d s ago, p50", stderr)


@pytest.mark.slow
def test_healthz_503_while_a_live_stream_is_down(tiny_onnx, tmp_path):
    """The camera stops sending after 2 s and refuses reconnects: 1 s later (--unhealthy-
    after 1) /healthz answers 503 naming the stream, edgevid_stream_up is 0, the status
    says DOWN; the run ends when the reconnect timeout runs out (exit 2)."""
    log, port = tmp_path / "r.jsonl", free_port()
    base = f"http://127.0.0.1:{port}"
    with MjpegServer(per_connection=100, max_connections=1, fps=50) as srv:
        proc = start_run("-s", srv.url, "-m", str(tiny_onnx), "--json", str(log),
                         "--status-s", "0.3", "--metrics-port", str(port), "--unhealthy-after",
                         "1", "--reconnect-timeout", "6", "--timeout", "2")  # fmt: skip
        wait_for_lines(log, proc, n=1)
        assert get(f"{base}/healthz")[0] == 200
        code, body = wait_until(lambda: (r := get(f"{base}/healthz"))[0] == 503 and r, proc)
        metrics = samples(get(f"{base}/metrics")[1])
        check = healthcheck(port)  # the images' HEALTHCHECK: 1, unhealthy
        _, stderr = proc.communicate(timeout=60)
    assert check.returncode == 1 and check.stderr.startswith("edgevid: error: http://127.0.0.1")
    assert "/healthz: 503" in check.stderr and '"status": "down"' in check.stderr
    doc = json.loads(body)
    assert doc["status"] == "down" and [s["stream"] for s in doc["streams"]] == [0]
    assert doc["streams"][0]["source"] == srv.url and doc["streams"][0]["no_frame_for_s"] > 1
    assert metrics['edgevid_stream_up{stream="0"}'] == 0 and metrics["edgevid_healthy"] == 0
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert "stream lost and not back after 6 s" in stderr.splitlines()[-1]
    status = read_records(log, None)
    status = [r for r in status if r["type"] == "status"]
    assert status[0]["healthy"] and not status[-1]["healthy"]
    assert not status[-1]["streams"][0]["up"]
    assert re.search(r"\[0\] DOWN, no frame for \d+ s", stderr)


def test_metrics_port_in_use_fails_before_the_model_loads(tmp_path, media_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = edgevid("run", "-s", str(media_dir / "bikes.mp4"), "-m",
                       str(tmp_path / "no.onnx"), "--metrics-port", str(port),
                       "--json", str(tmp_path / "r.jsonl"))  # fmt: skip
    assert_clear_error(proc, f"--metrics-port: cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "r.jsonl").exists()


def test_metrics_without_the_extra_is_a_clear_error(tiny_onnx, media_dir):
    code = (
        "import sys; sys.modules['prometheus_client'] = None\nfrom edgevid.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", "-s", str(media_dir / "bikes.mp4"), "-m",
         str(tiny_onnx), "--metrics-port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_clear_error(proc, "pip install 'edgevid[metrics]'", "--metrics-port")


def test_status_off_and_no_port_means_no_thread_and_no_server(tiny_onnx, media_dir):
    """--status-s 0: no status line even on a run longer than the interval would be."""
    from edgevid.runtime.health import HealthConfig, Monitor
    from edgevid.runtime.run import run_streams
    from edgevid.runtime.streamer import Streamer

    monitor = Monitor(HealthConfig(status_s=0))
    s = Streamer(media_dir / "carphone_pristine.mp4", tiny_onnx, max_frames=16)
    run_streams(s, monitor=monitor)
    assert monitor.server is None and monitor._thread is None
    assert not any(lane.latencies for lane in monitor._lanes)  # nothing kept for a status
    rec = check_record(monitor.status(), "status")
    assert rec["type"] == "status" and rec["streams"][0]["frames_read"] == 16
    assert rec["streams"][0]["inferences"] == 2 and not rec["streams"][0]["up"]  # ended
    assert rec["healthy"]  # an ended file is not a stream that is down


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_server_answers_while_the_model_loads(host):
    """Bound before the model loads: /healthz 200 "starting" (a long engine build is not a
    failure), /metrics the version; after close, nothing answers (exit 1 for Docker)."""
    from edgevid.runtime.health import HealthConfig, Monitor, Unhealthy, check_health

    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    port = free_port()
    try:
        monitor = Monitor(HealthConfig(metrics_port=port, metrics_host=host))
    except Exception as e:  # noqa: BLE001 (an IPv6 stack that cannot bind ::1)
        pytest.skip(f"cannot listen on {host}: {e}")
    try:
        assert check_health(host, port) == {"status": "starting"}
        where = f"[{host}]" if ":" in host else host
        code, text = get(f"http://{where}:{port}/metrics")
        assert code == 200 and 'edgevid_info{version="' in text
    finally:
        monitor.close()
    with pytest.raises(Unhealthy, match="no answer") as e:
        check_health(host, port, timeout_s=2)
    assert e.value.exit_code == 1  # Docker's HEALTHCHECK: unhealthy (2 is reserved)
