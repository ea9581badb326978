"""A .onnx on a Jetson (TensorRT + GPU, CPU-only onnxruntime) becomes a cached TensorRT engine.

No GPU here: the choice of backend and the cache's keys and staleness rules are checked on
real files; the build itself runs where TensorRT and a GPU exist (tests/test_export_trt.py).
"""

from __future__ import annotations

import json

import pytest

from edgevid.runtime.backends.onnx_engine import (
    CACHE_DIRNAME,
    CACHE_ENV,
    EngineKey,
    cache_dir,
    cached_engine,
    choose,
    engine_file,
    graph_sha256,
)

CPU_ORT = ["CPUExecutionProvider"]  # what PyPI's aarch64 onnxruntime has on a Jetson


@pytest.mark.parametrize(
    ("device", "providers", "has_trt", "gpu", "expected"),
    [
        ("auto", CPU_ORT, True, "Orin", "engine"),  # the Jetson case
        ("tensorrt", CPU_ORT, True, "Orin", "engine"),
        ("cuda", CPU_ORT, True, "Orin", "engine"),
        ("cpu", CPU_ORT, True, "Orin", "onnxruntime"),  # asked for the CPU
        ("auto", CPU_ORT, False, None, "onnxruntime"),  # a laptop: no TensorRT
        ("auto", CPU_ORT, True, None, "onnxruntime"),  # TensorRT installed, no GPU
        ("auto", ["CUDAExecutionProvider", *CPU_ORT], True, "RTX", "onnxruntime"),  # ORT GPU
        ("auto", ["TensorrtExecutionProvider", *CPU_ORT], True, "RTX", "onnxruntime"),
        ("openvino", CPU_ORT, True, "Orin", "onnxruntime"),
    ],
)
def test_backend_choice(device, providers, has_trt, gpu, expected):
    assert choose(device, providers, has_trt, gpu) == expected


def key(**changes) -> EngineKey:
    base = {
        "graph_sha256": "a" * 64,
        "tensorrt": "10.3.0",
        "gpu": "Orin",
        "batch": (1, 1, 8),
        "fp16_kernels": True,
    }
    return EngineKey(**{**base, **changes})


def test_the_key_covers_graph_tensorrt_gpu_profile_and_precision():
    digests = {
        key().digest(),
        key(graph_sha256="b" * 64).digest(),
        key(tensorrt="10.7.0").digest(),
        key(gpu="Xavier").digest(),
        key(batch=(1, 2, 4)).digest(),
        key(fp16_kernels=False).digest(),
    }
    assert len(digests) == 6
    assert key().digest() == key().digest() and len(key().digest()) == 16


def test_graph_hash_follows_the_bytes(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"graph one")
    b.write_bytes(b"graph one")
    assert graph_sha256(a) == graph_sha256(b)
    b.write_bytes(b"graph two")
    assert graph_sha256(a) != graph_sha256(b)


def test_cache_folder_beside_the_model_or_from_the_environment(tmp_path, monkeypatch):
    model = tmp_path / "models" / "prune4.onnx"
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_dir(model) == tmp_path / "models" / CACHE_DIRNAME
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "engines"))
    assert cache_dir(model) == tmp_path / "engines"


def put(folder, model, k: EngineKey, recorded: EngineKey | None = None):
    """An engine file and its sidecar as onnx_to_engine writes them (with the cache key)."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = engine_file(model, k, folder)
    engine.write_bytes(b"serialized engine")
    sidecar = {"extra": {"engine": {"cache_key": (recorded or k).to_dict()}}}
    engine.with_suffix(".json").write_text(json.dumps(sidecar))
    return engine


def test_a_matching_engine_is_reused(tmp_path):
    model, folder = tmp_path / "prune4.onnx", tmp_path / CACHE_DIRNAME
    engine = put(folder, model, key())
    assert cached_engine(model, key(), folder) == engine and engine.is_file()


def test_stale_and_foreign_engines_are_removed_never_loaded(tmp_path):
    model, folder = tmp_path / "prune4.onnx", tmp_path / CACHE_DIRNAME
    older_graph = put(folder, model, key(graph_sha256="b" * 64))  # the model was re-exported
    other_trt = put(folder, model, key(tensorrt="8.6.2"))  # JetPack upgraded
    assert cached_engine(model, key(), folder) is None
    assert not older_graph.exists() and not other_trt.exists()
    assert not older_graph.with_suffix(".json").exists()

    # right file name, but its sidecar records another GPU (copied from another Jetson)
    foreign = put(folder, model, key(), recorded=key(gpu="Xavier"))
    assert cached_engine(model, key(), folder) is None and not foreign.exists()
    # no sidecar at all (a half-copied cache)
    bare = put(folder, model, key())
    bare.with_suffix(".json").unlink()
    assert cached_engine(model, key(), folder) is None and not bare.exists()


def test_other_models_in_the_cache_are_left_alone(tmp_path):
    folder = tmp_path / CACHE_DIRNAME
    mine, other = tmp_path / "prune4.onnx", tmp_path / "prune4-fp16.onnx"
    theirs = put(folder, other, key(graph_sha256="c" * 64))
    assert cached_engine(mine, key(), folder) is None
    assert theirs.is_file()  # prune4-fp16-<key> is not an engine of prune4


def test_without_tensorrt_a_onnx_stays_with_onnxruntime(tiny_onnx):
    """Here (no TensorRT, no GPU) nothing is compiled or cached: ONNX Runtime runs it."""
    import importlib.util

    from edgevid.runtime.backends.onnx_engine import engine_backend

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed: the engine path is taken and tested elsewhere")
    lines: list[str] = []
    assert engine_backend(tiny_onnx, "auto", None, lines.append) is None
    assert lines == [] and not (tiny_onnx.parent / CACHE_DIRNAME).exists()
