"""The runtime as a client of a real Triton Inference Server (tritonserver from the
nvidia-pytriton wheel, Python backend running the exported tiny graph through ONNX Runtime),
serving the repository ``edgevid export --triton`` writes with its backend swapped to python.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

import tritonclient.grpc as grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from edgevid.errors import ModelError  # noqa: E402
from edgevid.runtime.backends import load_backend  # noqa: E402
from tests.conftest import read_records  # noqa: E402
from tests.triton.server import TritonServer, free_ports, provision, python_model  # noqa: E402

MAX_BATCH = 4
MODEL = "tiny-prune8"


@pytest.fixture(scope="module")
def repo(tiny_onnx, tmp_path_factory):
    """The repository ``--triton --batch 1:2:4`` writes, the model swapped to python."""
    from edgevid.export.triton import write_repository

    where = provision()
    if isinstance(where, str):
        pytest.skip(where)
    repo = tmp_path_factory.mktemp("triton") / "repo"
    (folder,) = write_repository(repo, [tiny_onnx], max_batch_size=MAX_BATCH)
    python_model(folder)
    return repo


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    srv = TritonServer(repo, tmp_path_factory.mktemp("tritonserver"))
    try:
        srv.start()
    except RuntimeError as e:
        pytest.skip(f"tritonserver cannot run here: {str(e)[-300:]}")
    print(f"tritonserver ready in {srv.start_s:.2f} s")
    yield srv
    srv.stop()


def uri(server, model: str = MODEL, query: str = "") -> str:
    return f"triton://127.0.0.1:{server.grpc_port}/{model}{query}"


def edgevid(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgevid", *args], capture_output=True, text=True, timeout=timeout
    )


def test_run_through_triton_matches_the_local_backend(server, tiny_onnx, media_dir, tmp_path):
    clip = str(media_dir / "bikes.mp4")
    common = ["run", "-s", clip, "--max-frames", "80", "--every", "4", "--smooth", "none"]
    remote = edgevid(*common, "-m", uri(server), "--json", str(tmp_path / "remote.jsonl"))
    local = edgevid(*common, "-m", str(tiny_onnx), "--json", str(tmp_path / "local.jsonl"))
    assert remote.returncode == 0, remote.stderr
    assert local.returncode == 0, local.stderr
    rows = [read_records(tmp_path / f"{name}.jsonl", "result") for name in ("remote", "local")]
    assert len(rows[0]) == len(rows[1]) >= 10
    for r, lo in zip(*rows, strict=True):
        assert (r["frame"], r["label"]) == (lo["frame"], lo["label"])
        assert r["score"] == pytest.approx(lo["score"], abs=1e-5)
        assert [k["label"] for k in r["top_k"]] == [k["label"] for k in lo["top_k"]]
        for a, b in zip(r["top_k"], lo["top_k"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    # one line names the backend; the summary has the network stage
    assert f"model {uri(server)} on triton[127.0.0.1:{server.grpc_port}/{MODEL}, server " in (
        remote.stderr
    )
    assert f"model {tiny_onnx} on onnxruntime[CPUExecutionProvider]" in local.stderr
    assert "network" in remote.stderr and "round trip" in remote.stderr


def test_metadata_and_limits_come_from_the_server(server, tiny_onnx):
    from edgevid.core.onnx_file import read_metadata

    backend = load_backend(uri(server))
    try:
        assert backend.meta == read_metadata(tiny_onnx)
        assert backend.max_batch == MAX_BATCH
        m = backend.meta
        x = np.random.default_rng(0).standard_normal(
            (MAX_BATCH + 2, m.num_frames, 3, m.image_size, m.image_size), dtype=np.float32
        )
        local = load_backend(tiny_onnx, "cpu")
        np.testing.assert_allclose(backend.run(x), local.run(x), atol=1e-5)  # split 4 + 2
        assert set(backend.timings()) == {"round trip", "network"}
    finally:
        backend.close()


def test_config_is_accepted_batches_form_and_oversize_is_refused(server, tiny_onnx):
    from edgevid.core.onnx_file import read_metadata

    m = read_metadata(tiny_onnx)
    client = grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        config = client.get_model_config(MODEL, as_json=True)["config"]
        assert int(config["max_batch_size"]) == MAX_BATCH and "dynamic_batching" in config
        (group,) = config["instance_group"]  # KIND_AUTO: the CPU on a server without a GPU
        assert (int(group["count"]), group["kind"]) == (1, "KIND_CPU")
        (warmup,) = config["model_warmup"]
        assert warmup["inputs"][config["input"][0]["name"]]["zero_data"] is True
        x = np.zeros((1, m.num_frames, 3, m.image_size, m.image_size), np.float32)
        name = config["input"][0]["name"]

        def request(batch: int) -> grpc.InferInput:
            inp = grpc.InferInput(name, [batch, *x.shape[1:]], "FP32")
            inp.set_data_from_numpy(np.repeat(x, batch, axis=0))
            return inp

        with pytest.raises(InferenceServerException, match=f"must be <= {MAX_BATCH}"):
            client.infer(MODEL, [request(MAX_BATCH + 1)])

        before = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
        done, lock = [], threading.Lock()

        def callback(result, error) -> None:
            with lock:
                done.append(error)

        for _ in range(12):  # concurrent single-clip requests, like 12 cameras
            client.async_infer(MODEL, [request(1)], callback)
        deadline = time.monotonic() + 30
        while len(done) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done == [None] * 12

        def stats() -> tuple[dict, int, int]:
            after = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
            inferences = int(after["inference_count"]) - int(before.get("inference_count", 0))
            executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
            return after, inferences, executions

        after, inferences, executions = stats()
        while inferences < 12 and time.monotonic() < deadline:  # the server counts a request
            time.sleep(0.05)  # after its response is sent: a callback can come first
            after, inferences, executions = stats()
        assert inferences == 12 and executions < 12  # the dynamic batcher merged requests
        sizes = {int(b["batch_size"]) for b in after["batch_stats"]}
        assert max(sizes) > 1 and max(sizes) <= MAX_BATCH
    finally:
        client.close()


def test_unknown_model_is_one_clear_line(server):
    """Waited for (a model may still be loading) for the reconnect window, then one line."""
    t0 = time.monotonic()
    r = edgevid("run", "-s", "0", "-m", uri(server, "no-such-model", "?reconnect=1.5"))
    assert r.returncode == 2
    assert time.monotonic() - t0 >= 1.5
    assert r.stderr.strip().splitlines() == [
        f"edgevid: error: {uri(server, 'no-such-model')}: model 'no-such-model' is not ready "
        f"on the Triton server at 127.0.0.1:{server.grpc_port} after 1.5 s (not in its "
        "repository, or failed to load)"
    ]


@pytest.mark.parametrize("port_kind", ["free", "http"])
def test_unreachable_server_is_one_clear_line(port_kind, server):
    """Nothing listening: one line after the reconnect window. Triton's HTTP port dialled
    (the client speaks gRPC): the line says which port to use."""
    port = free_ports(1)[0] if port_kind == "free" else server.http_port
    target = f"triton://127.0.0.1:{port}/{MODEL}"
    r = edgevid("run", "-s", "0", "-m", target + "?reconnect=1", timeout=60)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    if port_kind == "free":
        assert line.startswith(f"edgevid: error: {target}: no Triton server answers at 127.0.0.1:")
    else:  # an HTTP/1 server answers gRPC's HTTP/2 with garbage: refused or lost, never a hang
        assert line.startswith(f"edgevid: error: {target}: ")


def test_a_deadline_is_a_busy_server_not_a_lost_one(server, tiny_onnx):
    """Past its deadline a request is sent again (``retries``) on the same channel, then one
    line that names the deadline: no reconnect window is waited out."""
    backend = load_backend(uri(server, query="?reconnect=60"))
    m = backend.meta
    x = np.ones((1, m.num_frames, 3, m.image_size, m.image_size), np.float32)
    backend.run(x)
    backend.uri = dataclasses.replace(backend.uri, timeout_s=1e-4, retries=2)
    t0 = time.monotonic()
    with pytest.raises(ModelError, match=r"did not answer within 0.0001 s, 3 tries"):
        backend.run(x)
    assert time.monotonic() - t0 < 30 and backend.reconnects == 0  # not the 60 s window
    backend.close()


@pytest.mark.slow
def test_a_client_started_before_its_server_waits_for_the_model(repo, media_dir, tmp_path):
    """A compose file starts edgevid and tritonserver together: the run waits for the model
    to be ready (up to ?reconnect=S) instead of ending with exit 2."""
    ports = free_ports(3)
    target = f"triton://127.0.0.1:{ports[1]}/{MODEL}?reconnect=60"
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevid", "run", "-s", str(media_dir / "bikes.mp4"), "-m",
         target, "--max-frames", "16", "--every", "8", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    (tmp_path / "srv").mkdir()
    srv = TritonServer(repo, tmp_path / "srv", ports=ports)
    try:
        time.sleep(2)  # the client is up and waiting before the server starts
        assert proc.poll() is None, proc.communicate()[1]
        srv.start()
        _, err = proc.communicate(timeout=120)
    finally:
        srv.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(out.read_text().splitlines()) >= 1


@pytest.mark.slow
def test_a_lost_server_is_reconnected_like_a_lost_stream(repo, tiny_onnx, tmp_path):
    """The server goes away mid-run and comes back on the same port: the next request waits
    for it. Gone for longer than the reconnect window: one clear error."""
    first = TritonServer(repo, tmp_path / "a")
    (tmp_path / "a").mkdir()
    try:
        first.start()
    except RuntimeError as e:
        pytest.skip(f"tritonserver cannot run here: {str(e)[-300:]}")
    backend = load_backend(uri(first, query="?reconnect=60"))
    m = backend.meta
    x = np.ones((1, m.num_frames, 3, m.image_size, m.image_size), np.float32)
    expected = backend.run(x)
    first.stop()
    (tmp_path / "b").mkdir()
    second = TritonServer(repo, tmp_path / "b", ports=[first.http_port, first.grpc_port,
                                                      first.metrics_port])  # fmt: skip
    restart = threading.Timer(0.5, second.start)
    restart.start()
    try:
        np.testing.assert_allclose(backend.run(x), expected, atol=1e-6)
        assert backend.reconnects == 1
    finally:
        restart.join()
        second.stop()
    backend.uri = dataclasses.replace(backend.uri, reconnect_s=0.5)
    with pytest.raises(ModelError, match=r"Triton server lost and not back after 0.5 s"):
        backend.run(x)
    backend.close()
