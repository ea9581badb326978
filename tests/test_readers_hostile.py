"""One clear line for any file: every reader of metadata, sidecars, manifests, run configs,
resume state and caches, fed hostile bytes, raises only edgevid's errors.

Two layers. Hypothesis writes arbitrary bytes (and JSON built to hurt: deep nesting, huge
integers, NaN, 1e308, lone surrogates, invalid UTF-8) to real files and drives the real
readers, asserting that nothing but an EdgevidError subclass escapes, as one line. Then
the CLI: each hostile file where a command reads it, asserting exit code 2, exactly one
``edgevid: error:`` line, no traceback, and the hostile file untouched. A broken backend
cache is replaced, never fatal; a checkpoint with pickled weights is refused without the
advice to unpickle it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgevid.core.manifest import Manifest
from edgevid.core.meta import ModelMeta
from edgevid.core.schema import MAX_DEPTH, load_json
from edgevid.errors import DataError, EdgevidError, MetadataError, ModelError
from tests.conftest import MEDIA, assert_one_line, invoke, needs_torch

CLIP = MEDIA / "carphone_pristine.mp4"
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
VALID_META = ModelMeta(labels=["a", "b"], variant="tiny-prune8", image_size=32).to_dict()

# JSON text built to hurt a parser or what comes after it
HOSTILE_JSON = [
    "[" * 100_000 + "]" * 100_000,  # nesting beyond the parser's stack
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),  # beyond edgevid's limit
    '{"labels": ["a"], "image_size": ' + "9" * 400 + "}",  # a 400-digit integer
    '{"labels": ["a"], "image_size": ' + "9" * 5000 + "}",  # beyond Python's int limit
    '{"labels": ["a"], "mean": [NaN, 0, 0]}',
    '{"labels": ["a"], "std": [Infinity, 1, 1]}',
    '{"labels": ["a"], "std": [1e400, 1, 1]}',
    '{"labels": ["\\ud800"]}',  # a lone surrogate
    '{"\\udfff": 1}',
    '"just a string"',
    "null",
]


def hostile_bytes() -> st.SearchStrategy[bytes]:
    def with_value(key: str, value: str) -> bytes:
        doc = json.dumps(VALID_META)
        return doc.replace(f'"{key}": ', f'"{key}": {value}, "_": ', 1).encode()

    return st.one_of(
        st.binary(max_size=300),
        st.sampled_from([t.encode() for t in HOSTILE_JSON]),
        st.builds(
            with_value,
            st.sampled_from(sorted(VALID_META)),
            st.sampled_from(
                [
                    "9" * 400,
                    "1e308",
                    "-1e308",
                    "NaN",
                    "-Infinity",
                    "1e-320",
                    '"\\ud800"',
                    "[[[[[[[[]]]]]]]]",
                    "{}",
                    "true",
                ]
            ),
        ),  # fmt: skip
        st.binary(max_size=200).map(lambda b: json.dumps(VALID_META).encode()[:60] + b),
    )


def one_line(e: BaseException) -> None:
    assert isinstance(e, EdgevidError), repr(e)
    assert "\n" not in str(e) and str(e), repr(e)


# --- property: the readers themselves ---------------------------------------------------------
@SETTINGS
@given(data=hostile_bytes())
@example(data=b"\xff\xfe{}")  # not UTF-8
@example(data=json.dumps({**VALID_META, "sampling": {"clip_seconds": 1e308}}).encode())
@example(data=json.dumps({**VALID_META, "labels": ["ok", "\ud800"]}).encode())
def test_metadata_reader_on_bytes(data, tmp_path):
    path = tmp_path / "edgevid.json"
    path.write_bytes(data)
    try:
        meta = ModelMeta.load(path)
    except MetadataError as e:
        one_line(e)
        return
    json.dumps(meta.to_dict(), ensure_ascii=False).encode("utf-8")  # writable back
    meta.sampling.stream_stride(1000.0)  # usable: no overflow, no type error


@SETTINGS
@given(data=hostile_bytes())
@example(data=json.dumps({"root": ".", "classes": ["a", "b"], "splits": {"train": []},
                          "extra": {"mean_duration_s": 1e308}}).encode())  # fmt: skip
@example(data=json.dumps({"root": ".", "classes": ["a", "b"], "splits": {"train": []},
                          "seed": 10**400}).encode())  # fmt: skip
def test_manifest_reader_on_bytes(data, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_bytes(data)
    try:
        m = Manifest.load(path)
    except DataError as e:
        one_line(e)
        return
    for split in m.splits:
        try:
            m.paths(split)
        except DataError as e:
            one_line(e)


@SETTINGS
@given(data=hostile_bytes())
def test_run_config_reader_on_bytes(data, tmp_path):
    from edgevid.core.schema import read_json
    from edgevid.train.config import TrainConfig

    path = tmp_path / "config.json"
    path.write_bytes(data)
    try:
        read_json(TrainConfig, path, "run config", DataError, required=("variant",))
    except DataError as e:
        one_line(e)


@needs_torch
@SETTINGS
@given(data=hostile_bytes())
@example(data=b'{"format": 2, "state": ' + b"[" * 5000 + b"]" * 5000 + b"}")
def test_resume_state_reader_on_bytes(data, tmp_path):
    from edgevid.train.checkpoint import STATE_FILENAME, load_training_state

    (tmp_path / STATE_FILENAME).write_bytes(data)
    try:
        load_training_state(tmp_path)
    except ModelError as e:
        one_line(e)


@SETTINGS
@given(data=hostile_bytes())
def test_engine_and_sidecar_peeks_never_raise(data, tmp_path):
    """What the backends peek at before loading (a sidecar's metadata, an engine cache
    entry's key): broken means 'unknown', never an exception."""
    from edgevid.runtime.backends.engine_cache import Entry, recorded_key
    from edgevid.runtime.backends.onnxruntime import _peek_meta

    (tmp_path / "m.json").write_bytes(data)
    meta = _peek_meta(tmp_path / "m.onnx")
    assert meta is None or isinstance(meta, ModelMeta)
    key = recorded_key(Entry(tmp_path, "m"))
    assert key is None or isinstance(key, (dict, list, str, int, float, bool))


@pytest.mark.parametrize("text", HOSTILE_JSON, ids=range(len(HOSTILE_JSON)))
def test_load_json_refuses_hostile_text_in_one_line(text, tmp_path):
    path = tmp_path / "x.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    if text in ('"just a string"', "null"):
        assert load_json(path, "x", DataError) in ("just a string", None)
        return
    with pytest.raises(DataError) as e:
        load_json(path, "x", DataError)
    one_line(e.value)
    assert str(e.value).startswith(str(path))


def test_load_json_reads_regular_files_only(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it would block until a writer came: never opened
    with pytest.raises(DataError, match="not a regular file"):
        load_json(fifo, "manifest", DataError)
    with pytest.raises(DataError, match="is a folder"):
        load_json(tmp_path, "manifest", DataError)
    with pytest.raises(DataError, match="not a regular file"):
        load_json("/dev/zero", "manifest", DataError)


def test_load_json_bounds_the_size(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(2**20 + 1)  # sparse: costs no disk
    with pytest.raises(DataError, match="larger than 1 MiB"):
        load_json(big, "cache", DataError, max_bytes=2**20)


# --- the CLI: one line, exit 2, the file untouched ---------------------------------------------
@pytest.fixture(scope="module")
def bare_onnx(tiny_onnx, tmp_path_factory) -> Path:
    """The tiny graph without its embedded metadata: the sidecar is all there is."""
    import onnx

    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    path = tmp_path_factory.mktemp("bare") / "m.onnx"
    onnx.save(model, str(path))
    return path


def meta_with(**changes) -> dict:
    return {**VALID_META, "labels": ["Grow", "MoveLeft", "MoveRight", "Rotate", "Shrink"],
            **changes}  # fmt: skip


META_BYTES = json.dumps(meta_with()).encode()
SIDECARS = [
    # (id, sidecar bytes, fragment of the one line)
    (
        "400-digit",
        json.dumps(meta_with()).replace('"image_size": 32', '"image_size": ' + "9" * 400),
        "digits",
    ),  # fmt: skip
    (
        "nested",
        json.dumps(meta_with(extra={"x": json.loads("[" * 40 + "]" * 40)})),
        "nested deeper",
    ),  # fmt: skip
    (
        "utf8",
        META_BYTES[:20] + b"\xc3\x28" + META_BYTES[20:],
        "not UTF-8",
    ),  # fmt: skip
    (
        "clip-seconds",
        json.dumps(meta_with(sampling={"num_frames": 8, "mode": "uniform", "clip_seconds": 1e308})),
        "clip_seconds",
    ),
    ("surrogate", json.dumps(meta_with(labels=["a", "\ud800"])), "surrogate"),
    ("nan", json.dumps(meta_with(mean=[float("nan"), 0.4, 0.4])), "NaN"),
    ("inf", json.dumps(meta_with(std=[float("inf"), 0.2, 0.2])), "Infinity"),
    (
        "1e400",
        json.dumps(meta_with()).replace('"image_size": 32', '"image_size": 1e400'),
        "out of range",
    ),  # fmt: skip
    (
        "stride",
        json.dumps(
            meta_with(sampling={"num_frames": 8, "mode": "uniform", "frame_stride": 10**15})
        ),
        "frame_stride",
    ),
    ("layers", json.dumps(meta_with(num_layers=2**62)), "num_layers"),
]


@pytest.mark.parametrize("name, data, fragment", SIDECARS, ids=[s[0] for s in SIDECARS])
def test_run_with_a_hostile_sidecar_is_one_line(name, data, fragment, bare_onnx, tmp_path):
    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    model = tmp_path / "m.onnx"
    shutil.copy(bare_onnx, model)
    side = tmp_path / "m.json"
    side.write_bytes(data if isinstance(data, bytes) else data.encode())
    before = side.read_bytes()
    code, out = invoke(["run", "-s", CLIP, "-m", model, "--device", "cpu", "--json",
                        tmp_path / "r.jsonl"])  # fmt: skip
    assert_one_line(code, out, "m.json", fragment)
    assert side.read_bytes() == before


MANIFESTS = [
    # (id, edit of a valid manifest dict or raw text, fragment)
    ("seed-400-digits", lambda t: t.replace('"seed": 0', '"seed": ' + "7" * 400), "digits"),
    ("duration-1e308", lambda t: with_extra(t, mean_duration_s=1e308), "mean_duration_s"),
    ("fps-string", lambda t: with_extra(t, median_fps="fast"), "median_fps"),
    (
        "nested",
        lambda t: t.replace('"extra": {', '"extra": {"x": ' + "[" * 64 + "]" * 64 + ", ", 1),
        "nested deeper",
    ),  # fmt: skip
    ("surrogate-class", lambda t: t.replace('"Grow"', '"\\udc80"', 1), "surrogate"),
    ("invalid-utf8", lambda t: t.encode()[:30] + b"\xff" + t.encode()[30:], "not UTF-8"),
]


def with_extra(text: str, **values) -> str:
    d = json.loads(text)
    d["extra"].update(values)
    return json.dumps(d)


@pytest.fixture()
def dataset(synth_root, tmp_path) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(synth_root, copy)
    code, out = invoke(["data", "split", copy])
    assert code == 0, out
    return copy


@pytest.mark.parametrize("name, edit, fragment", MANIFESTS, ids=[m[0] for m in MANIFESTS])
def test_commands_with_a_hostile_manifest_are_one_line(name, edit, fragment, dataset, tmp_path):
    manifest = dataset / "manifest.json"
    data = edit(manifest.read_text())
    manifest.write_bytes(data if isinstance(data, bytes) else data.encode())
    before = manifest.read_bytes()
    code, out = invoke(["data", "inspect", manifest])
    assert_one_line(code, out, "manifest.json", fragment)
    if name in ("seed-400-digits", "duration-1e308"):
        code, out = invoke(["train", "--variant", "tiny-scratch", "--data", dataset, "--out",
                            tmp_path / "run", "--epochs", "1"])  # fmt: skip
        assert_one_line(code, out, fragment)
        assert not (tmp_path / "run").exists()
    assert manifest.read_bytes() == before


# --- a broken backend cache is replaced ---------------------------------------------------------
BAD_CACHES = [
    '{"key": KEY, "backend": "onnxruntime", "ms": {"onnxruntime": "fast"}}',
    '{"key": KEY, "backend": "onnxruntime", "ms": [1, 2]}',
    '{"key": KEY, "backend": "onnxruntime", "ms": {"onnxruntime": NaN}}',
    '{"key": KEY, "backend": "onnxruntime", "ms": {"tensorrt": 1.0}}',
    '{"key": KEY, "backend": 7}',
    '{"key": KEY, "backend": "onnxruntime", "ms": ' + "[" * 50 + "]" * 50 + "}",
    "\x00\xff garbage",
]


@pytest.mark.parametrize("text", BAD_CACHES, ids=range(len(BAD_CACHES)))
def test_a_broken_backend_cache_reads_as_none(text, tiny_onnx, tmp_path):
    from edgevid.runtime.backends.choice import cache_key, cache_path, read_cache

    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    key = cache_key(model, None)
    cache_path(model).write_text(text.replace("KEY", json.dumps(key)), errors="surrogateescape")
    assert read_cache(model, key) is None
    good = {"key": key, "backend": "onnxruntime", "ms": {"onnxruntime": 3.5}}
    cache_path(model).write_text(json.dumps(good))
    assert read_cache(model, key).ms == {"onnxruntime": 3.5}


@pytest.mark.slow
def test_run_replaces_a_broken_backend_cache(tiny_onnx, tmp_path):
    """`--device auto` with a cache whose timings have the wrong type: measured again, the
    cache rewritten, the run succeeds, and so does the next one (from the new cache)."""
    pytest.importorskip("openvino")
    from edgevid.runtime.backends.choice import cache_key, cache_path

    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    shutil.copy(tiny_onnx.with_suffix(".json"), model.with_suffix(".json"))
    key = cache_key(model, None)
    bad = {"key": key, "backend": "onnxruntime", "ms": {"onnxruntime": "fast"}}
    cache_path(model).write_text(json.dumps(bad))
    args = ["run", "-s", CLIP, "-m", model, "--max-frames", "16", "--json", tmp_path / "r.jsonl"]
    code, out = invoke(args, {"EDGEVID_CPU_BACKEND": "auto"})
    assert code == 0 and "Traceback" not in out, out
    fresh = json.loads(cache_path(model).read_text())
    assert all(isinstance(v, float) for v in fresh["ms"].values()) and fresh["key"] == key
    code, out = invoke(args, {"EDGEVID_CPU_BACKEND": "auto"})
    assert code == 0 and "cached" in out, out


# --- checkpoints ----------------------------------------------------------------------------------
@needs_torch
def test_pickled_checkpoint_weights_are_refused_without_unpickling_advice(
    tiny_checkpoint, synth_root, tmp_path
):
    import torch

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    from safetensors.torch import load_file

    torch.save(load_file(str(ckpt / "model.safetensors")), ckpt / "pytorch_model.bin")
    (ckpt / "model.safetensors").unlink()
    before = (ckpt / "pytorch_model.bin").read_bytes()
    for args in (["eval", "--model", ckpt, "--data", synth_root],
                 ["export", "--checkpoint", ckpt, "--out", tmp_path / "exp"]):  # fmt: skip
        code, out = invoke(args)
        line = assert_one_line(code, out, "pytorch_model.bin", "safetensors")
        assert "weights_only" not in out and "pickle" in line
    assert (ckpt / "pytorch_model.bin").read_bytes() == before
    assert not (tmp_path / "exp").exists()


@needs_torch
@pytest.mark.parametrize("config", ['{"num_labels": ' + "9" * 400 + "}",
                                    "[" * 80 + "]" * 80, b"\xff\xfe{}"])  # fmt: skip
def test_hostile_checkpoint_config_is_one_line(config, tiny_checkpoint, synth_root, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
    code, out = invoke(["eval", "--model", ckpt, "--data", synth_root])
    assert_one_line(code, out, "config.json")


# --- URIs: malformed hosts (IPv6), ports, queries: one line, never the password ----------------
@SETTINGS
@given(st.text(max_size=40))
@example("[::1/t")  # a malformed IPv6 host
@example("[zz::q]:1/t")
@example("h:99999/t")
@example("h/m?token=SECRETPW")  # an unknown key whose value is a secret
def test_publish_and_triton_uri_parsers(text):
    from edgevid.runtime.backends.triton import parse_uri
    from edgevid.runtime.outputs import MqttTarget

    for parse, scheme in ((MqttTarget.parse, "mqtt"), (MqttTarget.parse, "mqtts"),
                          (parse_uri, "triton")):  # fmt: skip
        for uri in (f"{scheme}://{text}", f"{scheme}://user:SECRETPW@{text}"):
            try:
                parsed = parse(uri)
            except EdgevidError as e:
                one_line(e)
                assert "SECRETPW" not in str(e), str(e)
                continue
            shown = parsed.uri if scheme.startswith("mqtt") else str(parsed)
            assert "SECRETPW" not in shown and "SECRETPW" not in repr(parsed)


# --- resume: a run folder whose config or resume state is hostile --------------------------------
@pytest.fixture(scope="module")
def trained_run(synth_root, tmp_path_factory) -> Path:
    """A finished one-epoch tiny-scratch run (config.json, manifest.json, last/, best/)."""
    pytest.importorskip("torch")
    run = tmp_path_factory.mktemp("run") / "run"
    code, out = invoke(["train", "--variant", "tiny-scratch", "--data", synth_root, "--epochs",
                        "1", "--weights", "random", "--out", run, "--quiet"])  # fmt: skip
    assert code == 0, out
    return run


RESUME_FILES = [
    # (file in the run, hostile bytes, fragment)
    (
        "last/training_state.json",
        b'{"format": 2, "state": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "training_state.json",
    ),  # fmt: skip
    ("last/training_state.json", b'{"format": ' + b"2" * 400 + b', "state": {}}', "digits"),
    ("last/training_state.json", b'{"format": 2, "state": {"\xff": 1}}', "not UTF-8"),
    ("config.json", b'{"variant": "tiny-scratch", "epochs": ' + b"3" * 400 + b"}", "digits"),
    ("config.json", b'{"variant": "tiny-scratch", "lr": NaN}', "NaN"),
    ("config.json", b'{"variant": "\\ud800"}', "surrogate"),
]


@needs_torch
@pytest.mark.parametrize("name, data, fragment", RESUME_FILES,
                         ids=[f"{n.split('/')[-1]}-{f}" for n, _, f in RESUME_FILES])  # fmt: skip
def test_resume_from_a_hostile_run_is_one_line(name, data, fragment, trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / name).write_bytes(data)
    before = {str(p): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, out = invoke(["train", "--resume", run, "--epochs", "2"])
    assert_one_line(code, out, fragment)
    assert {str(p): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
