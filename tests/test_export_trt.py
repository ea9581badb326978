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


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_with_a_batch_profile(tiny_onnx, tmp_path, precision):
    reason = gpu_reason()
    if reason:
        pytest.skip(reason)
    import tensorrt as trt

    from edgevid.core.artifact import sidecar_path
    from edgevid.core.onnx_file import read_metadata
    from edgevid.export.fp16 import onnx_to_fp16
    from edgevid.runtime.backends.tensorrt_build import onnx_to_engine

    graph = tiny_onnx if precision == "fp32" else onnx_to_fp16(tiny_onnx, tmp_path / "fp16.onnx")
    cache = tmp_path / "timing.cache"
    engine = onnx_to_engine(graph, tmp_path / "m-trt.engine", batch=(1, 2, 4), timing_cache=cache)
    assert engine.stat().st_size > 0 and cache.stat().st_size > 0
    meta = read_metadata(graph)
    from edgevid.core.meta import ModelMeta

    side = ModelMeta.load(sidecar_path(engine))
    assert side.labels == meta.labels and side.extra["engine"]["batch"] == [1, 2, 4]
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    assert runtime.deserialize_cuda_engine(engine.read_bytes()) is not None


# --- right by construction: the pure parts, checked here without a GPU ---------------------

from edgevid.errors import ExportError, ModelError  # noqa: E402
from edgevid.runtime.backends.tensorrt_build import (  # noqa: E402
    build_plan,
    check_dla_batch,
    fp32_islands,
    version_tuple,
)


@pytest.mark.parametrize(
    ("precision", "version", "strong", "explicit", "flags", "pin"),
    [
        # JetPack 5 (8.5/8.6): weakly typed; FP16 graphs obey their FP32 islands
        ("fp32", (8, 5), False, True, (), False),
        ("fp16", (8, 5), False, True, ("FP16", "OBEY_PRECISION_CONSTRAINTS"), True),
        ("fp16", (8, 6), False, True, ("FP16", "OBEY_PRECISION_CONSTRAINTS"), True),
        ("int8-static", (8, 6), False, True, ("FP16", "INT8"), False),
        # TensorRT 10 (JetPack 6, NGC 24.08): FP16/BF16 graphs strongly typed, no flags
        ("fp32", (10, 3), True, False, (), False),
        ("fp16", (10, 3), True, False, (), False),
        ("bf16", (10, 3), True, False, (), False),
        ("fp16", (10, 12), True, False, (), False),
        ("int8-static", (10, 3), False, False, ("FP16", "INT8"), False),
        # TensorRT 11: strongly typed always, the precision flags are gone
        ("fp16", (11, 0), True, False, (), False),
        ("int8-static", (11, 0), True, False, (), False),
        ("fp32", (11, 1), True, False, (), False),
    ],
)
def test_build_plan_per_version(precision, version, strong, explicit, flags, pin):
    plan = build_plan(precision, version)
    assert (plan.strongly_typed, plan.explicit_batch, plan.flags, plan.pin_fp32) == (
        strong,
        explicit,
        flags,
        pin,
    )
    assert not (plan.strongly_typed and plan.flags)  # flags on a strongly typed net: error


def test_fp32_graph_with_fp16_kernels_only_where_weak_typing_exists():
    assert build_plan("fp32", (8, 6), fp16_kernels=True).flags == ("FP16",)
    assert build_plan("fp32", (10, 3), fp16_kernels=True).flags == ("FP16",)
    eleven = build_plan("fp32", (11, 0), fp16_kernels=True)
    assert eleven.strongly_typed and not eleven.flags and "export --fp16" in eleven.note
    with pytest.raises(ExportError, match="no BF16"):
        build_plan("bf16", (8, 6))
    with pytest.raises(ExportError, match="too old"):
        build_plan("fp16", (8, 4))
    for cpu_graph in ("int8-dynamic", "int8-cpu"):  # rows with graph fusions: CPU engines only
        with pytest.raises(ExportError, match="export --int8 static"):
            build_plan(cpu_graph, (10, 3))


def test_plan_flags_exist_in_the_real_bindings():
    """Every flag name a plan uses is a real BuilderFlag of the installed TensorRT."""
    if not HAS_TRT:
        pytest.skip("tensorrt is not installed: the enum names are checked where it is")
    import tensorrt as trt

    version = version_tuple(trt.__version__)
    for precision in PRECISIONS:
        if version < PRECISIONS[precision].trt_min or PRECISIONS[precision].fusions:
            continue
        plan = build_plan(precision, version, fp16_kernels=precision == "fp32")
        for flag in plan.flags:
            assert hasattr(trt.BuilderFlag, flag)
        if plan.strongly_typed:
            assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def test_version_tuple():
    assert version_tuple("10.3.0.26") == (10, 3)
    assert version_tuple("8.5.2") == (8, 5)
    assert version_tuple("11") == (11, 0)
    with pytest.raises(ExportError, match="unrecognised"):
        version_tuple("ten")


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


def test_dla_takes_one_batch_size():
    assert check_dla_batch((4, 4, 4)) == (4, 4, 4)
    with pytest.raises(ExportError, match="use --batch 8:8:8"):
        check_dla_batch((1, 2, 8))


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

    from edgevid.runtime.backends.tensorrt import host_array, io_nbytes, pad_batch

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
    x = np.ones((3, 2), np.float32)
    padded = pad_batch(x, 4)
    assert padded.shape == (4, 2) and padded[3].sum() == 0 and pad_batch(x, 3) is x


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
    from edgevid.runtime.backends.tensorrt_build import onnx_to_engine

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache from this device")
    lines: list[str] = []
    onnx_to_engine(tiny_onnx, tmp_path / "m.engine", batch=(1, 1, 2), timing_cache=cache,
                   log=lines.append)  # fmt: skip
    assert any("replacing it" in line for line in lines)
    assert cache.read_bytes() != b"not a timing cache from this device"


def test_onnx_compiles_to_a_cached_engine_on_first_use(tiny_onnx, tmp_path):
    """The Jetson path: .onnx -> engine in the cache, found again by its key, same logits."""
    reason = gpu_reason()
    if reason:
        pytest.skip(reason)
    import numpy as np
    import tensorrt as trt

    from edgevid.runtime.backends import load_backend
    from edgevid.runtime.backends.onnx_engine import (
        RUNTIME_BATCH,
        EngineKey,
        build,
        cached_engine,
        graph_sha256,
    )
    from edgevid.runtime.backends.tensorrt import TensorRTBackend, gpu_name

    key = EngineKey(graph_sha256(tiny_onnx), trt.__version__, gpu_name(), RUNTIME_BATCH, False)
    lines: list[str] = []
    engine, seconds = build(tiny_onnx, key, tmp_path, lines.append)
    assert seconds > 0 and any("engine built in" in line for line in lines)
    assert cached_engine(tiny_onnx, key, tmp_path) == engine
    local = load_backend(tiny_onnx, "cpu")
    m = local.meta
    x = np.random.default_rng(0).standard_normal(
        (3, m.num_frames, 3, m.image_size, m.image_size), dtype=np.float32
    )
    with TensorRTBackend(engine) as backend:
        assert backend.name.startswith("tensorrt[")
        np.testing.assert_allclose(backend.run(x), local.run(x), atol=1e-3)


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
