"""Triton model repository: layout, config.pbtxt matching the graph, labels, metadata."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402

from edgevid.core.artifact import sidecar_path  # noqa: E402
from edgevid.core.meta import ModelMeta  # noqa: E402
from edgevid.core.onnx_file import read_metadata  # noqa: E402
from edgevid.errors import ExportError  # noqa: E402
from edgevid.export.triton import add_model  # noqa: E402


def field(text: str, name: str) -> str:
    m = re.search(rf"^\s*{name}: (.+)$", text, re.MULTILINE)
    assert m, f"{name} missing from config.pbtxt"
    return m.group(1).strip().strip('"')


def test_onnx_model_folder_matches_the_graph(tiny_onnx, tmp_path):
    folder = add_model(tmp_path / "repo", tiny_onnx, max_batch_size=8)
    meta = read_metadata(tiny_onnx)
    assert folder.name == "tiny-prune8"
    assert (folder / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (folder / "labels.txt").read_text().split() == meta.labels
    assert ModelMeta.load(folder / "edgevid.json") == meta
    config = (folder / "config.pbtxt").read_text()
    assert field(config, "name") == "tiny-prune8"
    assert field(config, "backend") == "onnxruntime" and "platform:" not in config
    assert field(config, "max_batch_size") == "8"
    # the metadata travels in the config, where a triton:// client reads it back
    from edgevid.runtime.backends.triton import meta_from_config, parse_uri

    value = re.search(r'string_value: ("(?:[^"\\]|\\.)*")', config).group(1)
    param = {"parameters": {"edgevid": {"string_value": json.loads(value)}}}
    assert meta_from_config(parse_uri("triton://h/m"), param) == meta
    assert "dynamic_batching" in config and "preferred_batch_size: [ 4, 8 ]" in config

    # the declared input/output are what ONNX Runtime sees, minus the batch dimension
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    dims = [int(d) for d in re.findall(r"dims: \[ ([\d, ]+) \]", config)[0].split(",")]
    assert dims == inp.shape[1:]
    assert f'name: "{inp.name}"' in config and f'name: "{out.name}"' in config
    assert "TYPE_FP32" in config and f"dims: [ {meta.num_classes} ]" in config


def test_uint8_graph_and_engine_entries(tiny_onnx, tmp_path):
    meta = read_metadata(tiny_onnx).replace(input_format="uint8", precision="fp16")
    engine = tmp_path / "tiny-fp16-trt.engine"  # the writer only copies the engine's bytes
    engine.write_bytes(b"serialized engine")
    meta.save(sidecar_path(engine))
    folder = add_model(tmp_path / "repo", engine, max_batch_size=4)
    assert folder.name == "tiny-fp16-trt"
    config = (folder / "config.pbtxt").read_text()
    assert field(config, "backend") == "tensorrt"
    assert (folder / "1" / "model.plan").read_bytes() == b"serialized engine"
    s = meta.image_size
    assert "TYPE_UINT8" in config and f"dims: [ {meta.num_frames}, {s}, {s}, 3 ]" in config
    assert 'name: "frames"' in config


def test_bad_entries_are_refused(tiny_onnx, tmp_path):
    with pytest.raises(ExportError, match="Triton takes"):
        add_model(tmp_path / "repo", tmp_path / "model.pt")
    with pytest.raises(ExportError, match="max batch size"):
        add_model(tmp_path / "repo", tiny_onnx, max_batch_size=0)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_max_batch_size_follows_the_batch_and_the_engine(tiny_onnx, tmp_path):
    """--triton takes max_batch_size from --batch MAX; an engine built for a max batch of 4
    defaults to 4 and is never declared bigger (Triton would refuse to load it)."""
    from edgevid.export.triton import write_repository

    (folder,) = write_repository(tmp_path / "a", [tiny_onnx], max_batch_size=4)
    assert field((folder / "config.pbtxt").read_text(), "max_batch_size") == "4"
    assert "preferred_batch_size: [ 2, 4 ]" in (folder / "config.pbtxt").read_text()
    meta = read_metadata(tiny_onnx)
    engine = tmp_path / "tiny-trt.engine"
    engine.write_bytes(b"serialized engine")
    meta.replace(extra={"engine": {"batch": [1, 2, 4]}}).save(sidecar_path(engine))
    folder = add_model(tmp_path / "b", engine)
    assert field((folder / "config.pbtxt").read_text(), "max_batch_size") == "4"
    with pytest.raises(ExportError, match="takes batches up to 4, not 8"):
        add_model(tmp_path / "c", engine, max_batch_size=8)


def test_uri_parsing():
    from edgevid.errors import ModelError
    from edgevid.runtime.backends.triton import parse_uri

    u = parse_uri("triton://gpu-box/prune4")
    assert (u.host, u.port, u.model, u.reconnect_s) == ("gpu-box", 8001, "prune4", 10.0)
    u = parse_uri("triton://10.0.0.2:9001/prune4?reconnect=2.5&timeout=1")
    assert (u.address, u.reconnect_s, u.timeout_s) == ("10.0.0.2:9001", 2.5, 1.0)
    assert str(u) == "triton://10.0.0.2:9001/prune4"
    assert parse_uri("triton://h/m?retries=0").retries == 0
    for bad in ("triton://host", "triton://host:x/m", "triton://h/m?tries=3", "triton://h/a/b",
                "triton://h/m?retries=1.5", "triton://h/m?retries=-1", "triton://h/m?timeout=0",
                "triton://h/m?reconnect=nan", "triton://h/m?retries=inf"):  # fmt: skip
        with pytest.raises(ModelError, match="triton://"):
            parse_uri(bad)


@pytest.mark.parametrize(
    ("status", "lost_for", "misses", "step"),
    [
        ("StatusCode.UNAVAILABLE", 0.0, 0, "reconnect"),  # lost: back off, fresh channel
        ("StatusCode.UNAVAILABLE", 9.9, 0, "reconnect"),
        ("StatusCode.UNAVAILABLE", 10.0, 0, "fail"),  # the reconnect window is over
        ("StatusCode.DEADLINE_EXCEEDED", 0.0, 1, "resend"),  # busy: the same request again
        ("StatusCode.DEADLINE_EXCEEDED", 0.0, 2, "resend"),
        ("StatusCode.DEADLINE_EXCEEDED", 0.0, 3, "fail"),  # 1 + retries (2) tries
        ("StatusCode.DEADLINE_EXCEEDED", 50.0, 1, "resend"),  # a deadline is not a lost server
        ("StatusCode.INVALID_ARGUMENT", 0.0, 0, "fail"),  # refused: never retried
        ("", 0.0, 0, "fail"),
    ],
)
def test_what_a_failed_request_leads_to(status, lost_for, misses, step):
    from edgevid.runtime.backends.triton import next_step, parse_uri

    assert next_step(status, lost_for, misses, parse_uri("triton://h/m")) == step


def test_generated_config_has_one_instance_and_a_warmup(tiny_onnx, tmp_path):
    from edgevid.export.triton import add_model

    text = (add_model(tmp_path / "repo", tiny_onnx) / "config.pbtxt").read_text()
    assert "instance_group [\n  {\n    count: 1\n    kind: KIND_AUTO\n  }\n]" in text
    assert 'model_warmup [\n  {\n    name: "zero clip"\n    batch_size: 1' in text
    assert 'key: "pixel_values"' in text and "zero_data: true" in text


def test_server_time_per_request_and_a_config_without_metadata():
    from edgevid.errors import MetadataError
    from edgevid.runtime.backends.triton import (
        meta_from_config,
        parse_uri,
        server_seconds_per_request,
    )

    def stats(ns: int, count: int) -> dict:  # get_inference_statistics(as_json=True) shape
        part = {"count": str(count), "ns": str(ns)}
        inference = {k: part for k in ("queue", "compute_input", "compute_infer")}
        inference["success"] = {"count": str(count)}
        return {"model_stats": [{"inference_stats": inference}]}

    # 4 new requests, each stage 8 ms in all (2 ms per request), 3 stages -> 6 ms each
    assert server_seconds_per_request(stats(0, 0), stats(8_000_000, 4)) == 0.006
    assert server_seconds_per_request(stats(5, 2), stats(5, 2)) is None  # nothing new
    with pytest.raises(MetadataError, match="no 'edgevid' parameter"):
        meta_from_config(parse_uri("triton://h/m"), {"name": "m", "parameters": {}})
