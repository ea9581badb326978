"""ONNX Runtime's providers and TensorRT EP options, decided from the graph's metadata (the
desktop image runs ``.onnx`` graphs on the TensorRT EP): pure functions, every precision."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgevid.core.artifact import read_meta
from edgevid.core.precision import PRECISIONS
from edgevid.errors import ModelError
from edgevid.runtime.backends.onnxruntime import (
    TRT_EP_MAX_BATCH,
    cpu_graph,
    select_providers,
    trt_ep_options,
)


@pytest.fixture(scope="module")
def meta(tiny_onnx):
    return read_meta(tiny_onnx)


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_trt_ep_options_follow_the_precision_table(meta, precision, tmp_path):
    m = dataclasses.replace(meta, precision=precision)
    row = PRECISIONS[precision]
    opts = trt_ep_options(m, tmp_path)
    assert opts["trt_fp16_enable"] == ("FP16" in row.trt_flags)
    assert opts["trt_int8_enable"] == ("INT8" in row.trt_flags)  # Q/DQ graphs need INT8
    assert opts["trt_engine_cache_path"] == opts["trt_timing_cache_path"] == str(tmp_path)
    assert opts["trt_engine_cache_enable"] and opts["trt_timing_cache_enable"]
    clip = f"{m.num_frames}x3x{m.image_size}x{m.image_size}"
    assert opts["trt_profile_min_shapes"] == f"pixel_values:1x{clip}"
    assert opts["trt_profile_opt_shapes"] == f"pixel_values:1x{clip}"
    assert opts["trt_profile_max_shapes"] == f"pixel_values:{TRT_EP_MAX_BATCH}x{clip}"
    assert cpu_graph(m) == bool(row.fusions)


def test_uint8_graphs_profile_their_frames_input(meta, tmp_path):
    m = dataclasses.replace(meta, input_format="uint8")
    s = m.image_size
    opts = trt_ep_options(m, tmp_path)
    assert opts["trt_profile_max_shapes"] == f"frames:{TRT_EP_MAX_BATCH}x{m.num_frames}x{s}x{s}x3"


def test_without_metadata_only_the_caches_are_set(tmp_path):
    assert set(trt_ep_options(None, tmp_path)) == {
        "trt_engine_cache_enable", "trt_engine_cache_path",
        "trt_timing_cache_enable", "trt_timing_cache_path",
    }  # fmt: skip
    assert not cpu_graph(None)


@pytest.mark.parametrize("precision", [n for n, p in PRECISIONS.items() if p.fusions])
def test_cpu_graphs_stay_on_the_cpu(meta, precision):
    """int8-dynamic / int8-cpu hold contrib ops made for CPU engines: auto never sends them
    to a GPU provider, and asking for one is one clear line."""
    m = dataclasses.replace(meta, precision=precision)
    assert select_providers("auto", Path("m.onnx"), m) == ["CPUExecutionProvider"]
    for device in ("cuda", "tensorrt"):
        with pytest.raises(ModelError, match=f"a {precision} graph is made for CPU engines"):
            select_providers(device, Path("m.onnx"), m)


def test_providers_are_chosen_from_the_sidecar(tiny_onnx, tmp_path):
    """Before the session exists the sidecar decides; an unreadable one decides nothing."""
    import shutil

    from edgevid.core.artifact import sidecar_path
    from edgevid.runtime.backends.onnxruntime import _peek_meta

    assert _peek_meta(tiny_onnx).precision == "fp32"
    graph = tmp_path / "g.onnx"
    shutil.copyfile(tiny_onnx, graph)
    assert _peek_meta(graph) is None  # no sidecar
    sidecar_path(graph).write_text("{not json")
    assert _peek_meta(graph) is None
