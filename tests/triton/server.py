"""A real ``tritonserver`` for the tests, from the nvidia-pytriton wheel that
``.ci/pytriton.sh`` unpacks into ``.cache/pytriton`` (never installed into the venv).

    with TritonServer(repo) as server:      # 127.0.0.1, free HTTP / gRPC / metrics ports
        uri = f"triton://127.0.0.1:{server.grpc_port}/tiny-prune8"

The Python backend's stub is the wheel's build for this interpreter's version; it embeds
this interpreter's libpython (LD_LIBRARY_PATH) and, with this interpreter's folder first on
PATH, sees this environment's packages (numpy, onnxruntime for the test model).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "pytriton"
PROVISION = ROOT / ".ci" / "pytriton.sh"
MODEL_PY = Path(__file__).with_name("model.py")


def provision() -> Path | str:
    """The unpacked wheel's folder, provisioning it if needed; or why it cannot run."""
    binary = CACHE / "pytriton" / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        r = subprocess.run(
            ["bash", str(PROVISION), sys.executable], capture_output=True, text=True, timeout=600
        )
        if r.returncode != 0:
            return f"nvidia-pytriton not provisioned ({PROVISION.name}: {r.stderr.strip()[-200:]})"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = CACHE / "pytriton" / "tritonserver" / "python_backend_stubs" / version
    if not (stub / "triton_python_backend_stub").is_file():
        return f"the tritonserver wheel has no Python backend stub for Python {version}"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return "this Python has no shared libpython, which the Python backend stub embeds"
    return CACHE


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def python_model(folder: Path) -> Path:
    """Turn a model folder written by ``--triton`` into a Python-backend one running its
    ``model.onnx`` (the config is otherwise left exactly as written)."""
    config = folder / "config.pbtxt"
    text = config.read_text()
    assert 'backend: "onnxruntime"' in text, text[:200]
    config.write_text(text.replace('backend: "onnxruntime"', 'backend: "python"'))
    shutil.copyfile(MODEL_PY, folder / "1" / "model.py")
    return folder


class TritonServer:
    """``tritonserver`` on 127.0.0.1 serving ``repo``; stopped (SIGINT, then kill) on exit."""

    def __init__(self, repo: Path, workdir: Path, *, ports: list[int] | None = None):
        self.repo, self.workdir = repo, workdir
        self.http_port, self.grpc_port, self.metrics_port = ports or free_ports(3)
        self.log = workdir / "tritonserver.log"
        self.proc: subprocess.Popen | None = None
        self.start_s: float | None = None  # seconds from launch to ready

    def _backends(self) -> Path:
        """A backend directory with the Python backend and this Python's stub."""
        wheel = CACHE / "pytriton" / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        python = self.workdir / "backends" / "python"
        if not python.is_dir():
            python.mkdir(parents=True)
            for f in (wheel / "backends" / "python").iterdir():
                os.symlink(f, python / f.name)
            stub = wheel / "python_backend_stubs" / version / "triton_python_backend_stub"
            os.symlink(stub, python / stub.name)
        return python.parent

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(CACHE / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")])
        # The stub's embedded interpreter ignores PYTHONPATH; it finds itself as the first
        # `python3` on PATH, so this interpreter's folder first makes it pick up this
        # environment (a venv's pyvenv.cfg beside it) and its packages.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["OMP_NUM_THREADS"] = "1"
        return env

    def start(self, timeout: float = 60.0) -> TritonServer:
        import tritonclient.grpc as grpc
        from tritonclient.utils import InferenceServerException

        cmd = [
            str(CACHE / "pytriton" / "tritonserver" / "bin" / "tritonserver"),
            f"--model-repository={self.repo}",
            f"--backend-directory={self._backends()}",
            f"--backend-config=python,shm-region-prefix-name=edgevid{os.getpid()}_{self.grpc_port}_",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false", "--exit-on-error=true", "--strict-readiness=true",
        ]  # fmt: skip
        t0 = time.perf_counter()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env())
        client = grpc.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        try:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tritonserver exited {self.proc.returncode}: {self.tail()}")
                try:
                    if client.is_server_ready(client_timeout=1):
                        self.start_s = time.perf_counter() - t0
                        return self
                except InferenceServerException:  # not up yet: connection refused
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {timeout:g} s: {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # graceful: unloads models, ends the stubs
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
