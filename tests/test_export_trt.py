"""TensorRT engines: built where TensorRT and a GPU exist; a clear error everywhere else."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from edgevid.errors import MissingDependencyError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def gpu_reason() -> str | None:
    """Why engines cannot be built here, or None when they can."""
    if not HAS_TRT:
        return "tensorrt is not installed (pip install 'edgevid[trt]' on a machine with a GPU)"
    import tensorrt as trt

    try:
        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except TypeError:
        return "TensorRT is installed but found no NVIDIA GPU"
    return None


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the missing-TensorRT path is moot")
def test_missing_tensorrt_is_one_clear_line_before_any_work(tmp_path):
    from edgevid.export.trt import load_tensorrt

    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevid\[trt\]'"):
        load_tensorrt()
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "edgevid", "export", "--variant", "tiny-prune8", "--random-init"]
        + ["--trt", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "edgevid: error: 'tensorrt' is needed for building TensorRT engines (needs an NVIDIA GPU)"
        " but is not installed: pip install 'edgevid[trt]'"
    ]
    assert not out.exists()  # refused before the model was even loaded


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_with_a_batch_profile(tiny_onnx, tmp_path, precision):
    reason = gpu_reason()
    if reason:
        pytest.skip(reason)
    import tensorrt as trt

    from edgevid.export.fp16 import onnx_to_fp16
    from edgevid.export.onnx_io import read_metadata, sidecar_path
    from edgevid.export.trt import onnx_to_engine

    graph = tiny_onnx if precision == "fp32" else onnx_to_fp16(tiny_onnx, tmp_path / "fp16.onnx")
    cache = tmp_path / "timing.cache"
    engine = onnx_to_engine(graph, tmp_path / "m-trt.engine", batch=(1, 2, 4), timing_cache=cache)
    assert engine.stat().st_size > 0 and cache.stat().st_size > 0
    meta = read_metadata(graph)
    from edgevid.meta import ModelMeta

    side = ModelMeta.load(sidecar_path(engine))
    assert side.labels == meta.labels and side.extra["engine"]["batch"] == [1, 2, 4]
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    assert runtime.deserialize_cuda_engine(engine.read_bytes()) is not None
