"""TensorRT engines: built where TensorRT and a GPU exist; a clear error everywhere else."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from edgevid.core.precision import PRECISIONS
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
    from edgevid.runtime.backends.tensorrt_build import load_tensorrt

    with pytest.raises(MissingDependencyError, match=r"pip install 'edgevid\[trt\]'"):
        load_tensorrt()
    refused_before_any_work(
        tmp_path,
        [],
        "edgevid: error: 'tensorrt' is needed for building TensorRT engines (needs an NVIDIA GPU)"
        " but is not installed: pip install 'edgevid[trt]'",
    )


def refused_before_any_work(tmp_path, extra: list[str], line: str) -> None:
    """``edgevid export --trt`` with ``extra`` fails with ``line`` alone, writing nothing."""
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "edgevid", "export", "--variant", "tiny-prune8", "--random-init"]
        + ["--trt", *extra, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [line]
    assert not out.exists()  # refused before the model was even loaded


def device_facts():
    import tensorrt as trt

    from edgevid.runtime.backends.tensorrt_build import probe_device

    return probe_device(trt)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_with_a_batch_profile(tiny_onnx, tmp_path, precision):
    reason = gpu_reason()
    if reason:
        pytest.skip(reason)
    import tensorrt as trt

    from edgevid.core.artifact import sidecar_path
    from edgevid.core.meta import ModelMeta
    from edgevid.core.onnx_file import read_metadata
    from edgevid.export.fp16 import onnx_to_fp16
    from edgevid.runtime.backends.onnx_engine import build_file
    from edgevid.runtime.backends.trt_plan import BuildRequest, plan_build

    graph = tiny_onnx if precision == "fp32" else onnx_to_fp16(tiny_onnx, tmp_path / "fp16.onnx")
    meta = read_metadata(graph)
    plan = plan_build(meta.precision, BuildRequest(batch=(1, 2, 4)), device_facts())
    cache = tmp_path / "timing.cache"
    engine = build_file(graph, tmp_path / "m-trt.engine", plan, meta, cache)  # + parity check
    assert engine.stat().st_size > 0 and cache.stat().st_size > 0
    side = ModelMeta.load(sidecar_path(engine))
    assert side.labels == meta.labels and side.extra["engine"]["batch"] == [1, 2, 4]
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    assert runtime.deserialize_cuda_engine(engine.read_bytes()) is not None


# --- right by construction: the pure parts, checked here without a GPU ---------------------

from edgevid.errors import ModelError  # noqa: E402
from edgevid.runtime.backends.tensorrt_build import fp32_islands  # noqa: E402
from edgevid.runtime.backends.trt_plan import (  # noqa: E402
    BuildRequest,
    DeviceFacts,
    Skipped,
    plan_build,
    version_tuple,
)


def test_plan_names_exist_in_the_real_bindings():
    """Every flag and enum a plan names is a real member of the installed TensorRT."""
    if not HAS_TRT:
        pytest.skip("tensorrt is not installed: the enum names are checked where it is")
    import tensorrt as trt

    facts = DeviceFacts(trt.__version__, "GPU", (8, 7), 16, 2)
    for precision, row in PRECISIONS.items():
        if version_tuple(trt.__version__) < row.trt_min or row.fusions:
            continue
        for dla in (None, 0):
            plan = plan_build(precision, BuildRequest(batch=(2, 2, 2), dla_core=dla), facts)
            if isinstance(plan, Skipped):
                continue
            for flag in plan.flags:
                assert hasattr(trt.BuilderFlag, flag)
            if plan.strongly_typed:
                assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert hasattr(trt.BuilderFlag, "GPU_FALLBACK") and hasattr(trt.DeviceType, "DLA")


def test_fp32_islands_are_the_layers_whose_outputs_are_all_fp32():
    layers = [
        ("CONVOLUTION", ["HALF"]),
        ("IDENTITY", ["FLOAT"]),  # the Cast into an island
        ("NORMALIZATION", ["FLOAT"]),
        ("SOFTMAX", ["FLOAT"]),
        ("SHAPE", ["INT32"]),
        ("CONSTANT", ["FLOAT"]),  # weights: nothing to compute
        ("MATRIX_MULTIPLY", ["HALF"]),
        ("TOPK", ["FLOAT", "INT32"]),
    ]
    assert fp32_islands(layers) == [1, 2, 3]


def test_dla_with_a_dynamic_batch_is_refused_before_any_work(tmp_path):
    refused_before_any_work(
        tmp_path,
        ["--dla-core", "0", "--batch", "1:2:4"],
        "edgevid: error: a DLA engine takes one batch size, not 1:2:4: use --batch 4:4:4 "
        "(or 2:2:2) with --dla-core",
    )


def test_engine_buffers_are_sized_by_bytes_fp16_included():
    import ctypes

    import numpy as np

    from edgevid.runtime.backends.tensorrt import host_array, io_nbytes

    shape = (2, 8, 3, 4, 4)
    assert io_nbytes(shape, np.dtype(np.float16)) == 2 * 8 * 3 * 4 * 4 * 2
    assert io_nbytes(shape, np.dtype(np.float32)) == 2 * io_nbytes(shape, np.dtype(np.float16))
    assert io_nbytes((4, 8, 32, 32, 3), np.dtype(np.uint8)) == 4 * 8 * 32 * 32 * 3
    for dtype in (np.float16, np.float32, np.uint8):  # a real allocation, viewed in place
        n = io_nbytes(shape, np.dtype(dtype))
        raw = ctypes.create_string_buffer(n)
        view = host_array(ctypes.addressof(raw), shape, np.dtype(dtype))
        assert view.shape == shape and view.dtype == dtype and view.nbytes == n
        view[:] = np.arange(view.size).reshape(shape) % 7  # float32 -> engine dtype on write
        again = host_array(ctypes.addressof(raw), shape, np.dtype(dtype))
        np.testing.assert_array_equal(again, np.arange(view.size).reshape(shape) % 7)


def test_cuda_error_names_are_text_not_bytes():
    from edgevid.runtime.backends.tensorrt import error_text

    assert error_text(b"cudaErrorInsufficientDriver") == "cudaErrorInsufficientDriver"
    assert error_text("cudaErrorNoDevice") == "cudaErrorNoDevice"


def test_engine_io_dtypes_map_to_numpy():
    if not HAS_TRT:
        pytest.skip("tensorrt is not installed: trt.nptype is checked where it is")
    import numpy as np
    import tensorrt as trt

    from edgevid.runtime.backends.tensorrt import numpy_dtype

    assert numpy_dtype(trt, trt.float16) == np.float16
    assert numpy_dtype(trt, trt.float32) == np.float32
    assert numpy_dtype(trt, trt.uint8) == np.uint8
    if hasattr(trt, "bfloat16"):
        with pytest.raises(ModelError, match="not supported"):
            numpy_dtype(trt, trt.bfloat16)


def test_foreign_timing_cache_is_reported_and_replaced(tiny_onnx, tmp_path):
    reason = gpu_reason()
    if reason:
        pytest.skip(reason)
    import tensorrt as trt

    from edgevid.core.onnx_file import read_metadata
    from edgevid.runtime.backends.tensorrt_build import apply_plan

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache from this device")
    meta = read_metadata(tiny_onnx)
    plan = plan_build("fp32", BuildRequest(batch=(1, 1, 2)), device_facts())
    lines: list[str] = []
    apply_plan(plan, trt, tiny_onnx, meta, timing_cache=cache, say=lines.append)
    assert any("replacing it" in line for line in lines)
    assert cache.read_bytes() != b"not a timing cache from this device"


def test_onnx_compiles_to_a_cached_engine_on_first_use(tiny_onnx, tmp_path):
    """The Jetson path: .onnx -> engine in the cache (checked against ONNX Runtime CPU),
    found again by its key, the same logits; every batch size 1..9 on a 2:2:4 profile."""
    reason = gpu_reason()
    if reason:
        pytest.skip(reason)
    import numpy as np

    from edgevid.runtime.backends import load_backend
    from edgevid.runtime.backends.onnx_engine import compile_onnx, probe_clip
    from edgevid.runtime.backends.tensorrt import TensorRTBackend

    lines: list[str] = []
    request = BuildRequest(batch=(2, 2, 4))
    entry, built = compile_onnx(tiny_onnx, request, log=lines.append, folder=tmp_path)
    assert built and any("built and checked" in line for line in lines)
    again, built = compile_onnx(tiny_onnx, request, folder=tmp_path)
    assert again == entry and not built
    local = load_backend(tiny_onnx, "cpu")
    x = probe_clip(local.meta, rows=9)
    with TensorRTBackend(entry.engine) as backend:
        assert backend.name.startswith("tensorrt[") and backend.profile == (2, 2, 4)
        for rows in range(1, 10):  # padded to 2, split above 4
            np.testing.assert_allclose(backend.run(x[:rows]), local.run(x[:rows]), atol=1e-3)


def test_build_progress_lines_are_phases_and_throttled_steps():
    from edgevid.runtime.backends.tensorrt_build import BuildProgress

    now = [0.0]
    lines: list[str] = []
    progress = BuildProgress(lines.append, every_s=10.0, clock=lambda: now[0])
    progress.start("Building engine", None, 3)
    progress.start("Tactic timing", "Building engine", 100)  # nested: no line of its own
    for step in range(100):
        now[0] += 0.5
        assert progress.step("Tactic timing", step) is True
    progress.finish("Tactic timing")
    progress.finish("Building engine")
    assert lines[0] == "  TensorRT: Building engine ..."
    steps = [line for line in lines if "Tactic timing" in line]
    assert steps == [f"  TensorRT: Tactic timing {n}/100" for n in (20, 40, 60, 80, 100)]
    assert lines[-1] == "  TensorRT: Building engine done in 50.0 s"
