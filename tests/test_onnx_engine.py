"""A .onnx on a Jetson (TensorRT + GPU, CPU-only onnxruntime) becomes a cached TensorRT engine;
``edgevid compile`` does it on purpose. No GPU here: the routing, the CLI's refusals and its
torch-free start are checked; the cache on real files in tests/test_engine_cache.py; the
build itself where TensorRT and a GPU exist (tests/test_export_trt.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from edgevid.core.precision import PRECISIONS
from edgevid.runtime.backends.onnx_engine import choose, graph_sha256

CPU_ORT = ["CPUExecutionProvider"]  # what PyPI's aarch64 onnxruntime has on a Jetson
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize(
    ("device", "providers", "has_trt", "gpu", "expected"),
    [
        ("auto", CPU_ORT, True, True, "engine"),  # the Jetson case
        ("tensorrt", CPU_ORT, True, True, "engine"),
        ("cuda", CPU_ORT, True, True, "engine"),
        ("cpu", CPU_ORT, True, True, "onnxruntime"),  # asked for the CPU
        ("auto", CPU_ORT, False, False, "onnxruntime"),  # a laptop: no TensorRT
        ("auto", CPU_ORT, True, False, "onnxruntime"),  # TensorRT installed, no GPU
        ("auto", ["CUDAExecutionProvider", *CPU_ORT], True, True, "onnxruntime"),  # ORT GPU
        ("auto", ["TensorrtExecutionProvider", *CPU_ORT], True, True, "onnxruntime"),
        ("openvino", CPU_ORT, True, True, "onnxruntime"),
    ],
)
def test_backend_choice(device, providers, has_trt, gpu, expected):
    assert choose(device, providers, has_trt, gpu, "fp32") == expected


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", ["auto", "tensorrt", "cuda"])
def test_cpu_only_graphs_go_to_onnx_runtime_on_a_jetson(precision, device):
    """int8-dynamic / int8-cpu (rows with fusions) are never sent to the TensorRT builder."""
    route = choose(device, CPU_ORT, True, True, precision)
    assert route == ("cpu-graph" if PRECISIONS[precision].fusions else "engine")


def test_graph_hash_follows_the_bytes(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"graph one")
    b.write_bytes(b"graph one")
    assert graph_sha256(a) == graph_sha256(b)
    b.write_bytes(b"graph two")
    assert graph_sha256(a) != graph_sha256(b)


def test_without_tensorrt_a_onnx_stays_with_onnxruntime(tiny_onnx, tmp_path, monkeypatch):
    """Here (no TensorRT, no GPU) nothing is compiled or cached: ONNX Runtime runs it."""
    from edgevid.runtime.backends.engine_cache import CACHE_DIRNAME, CACHE_ENV
    from edgevid.runtime.backends.onnx_engine import engine_backend

    if HAS_TRT:
        pytest.skip("tensorrt is installed: the engine path is taken and tested elsewhere")
    monkeypatch.delenv(CACHE_ENV, raising=False)
    lines: list[str] = []
    assert engine_backend(tiny_onnx, "auto", None, lines.append) is None
    assert lines == [] and not (tiny_onnx.parent / CACHE_DIRNAME).exists()


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Block())
from edgevid.cli import main
sys.argv = ["edgevid", *sys.argv[1:]]
main()
"""


def edgevid_without_torch(*args: str) -> subprocess.CompletedProcess:
    """``edgevid ARGS`` in a Python where importing torch or transformers fails."""
    cmd = [sys.executable, "-c", BLOCK_TORCH, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_compile_help_runs_without_torch():
    r = edgevid_without_torch("compile", "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: edgevid compile [OPTIONS] MODEL" in r.stdout
    for option in ("--precision", "--dla-core", "--batch", "--workspace-mb", "--timing-cache"):
        assert option in r.stdout


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the missing-TensorRT path is moot")
def test_compile_without_tensorrt_is_one_line(tiny_onnx):
    r = edgevid_without_torch("compile", str(tiny_onnx), "--batch", "2:2:2")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "edgevid: error: 'tensorrt' is needed for building TensorRT engines (needs an NVIDIA "
        "GPU) but is not installed: pip install 'edgevid[trt]'"
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["missing.onnx"], "missing.onnx: not an ONNX file (edgevid compile takes a .onnx)"),
        (["m.engine"], "m.engine: not an ONNX file (edgevid compile takes a .onnx)"),
        (["m.onnx", "--batch", "4:2:8"], "--batch must satisfy 1 <= MIN <= OPT <= MAX"),
        (["m.onnx", "--dla-core", "0", "--batch", "1:2:4"], "a DLA engine takes one batch"),
    ],
)
def test_compile_refuses_bad_input_in_one_line(tmp_path, args, line):
    (tmp_path / "m.engine").write_bytes(b"x")
    (tmp_path / "m.onnx").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-m", "edgevid", "compile", *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and line in r.stderr
