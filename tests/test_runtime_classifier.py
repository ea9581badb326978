"""Classifier and backends on real ONNX Runtime sessions; metadata checks; raw-input graphs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgevid.core.meta import ONNX_META_KEY, ModelMeta
from edgevid.core.preprocess import prepare_frame, preprocess_clip
from edgevid.core.sampling import uniform_indices
from edgevid.core.video import read_video
from edgevid.errors import MetadataError, MissingDependencyError, ModelError
from edgevid.runtime.backends import backend_class, load_backend
from edgevid.runtime.classifier import Classifier
from edgevid.runtime.smoothing import softmax

onnx = pytest.importorskip("onnx", reason="building test graphs needs the export extra (onnx)")
from onnx import TensorProto, helper  # noqa: E402

LABELS = ["a", "b", "c"]


def uint8_graph(path, meta: ModelMeta, weights: np.ndarray):
    """frames uint8 (B, T, S, S, 3) -> mean RGB over T, H, W (0..255) @ W -> logits (B, C).

    Normalisation happens inside (here: none at all), so the host must NOT normalise.
    """
    t, s, c = meta.num_frames, meta.image_size, meta.num_classes
    nodes = [
        helper.make_node("Cast", ["frames"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),  # (B, 3)
        helper.make_node("MatMul", ["m", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "uint8_mean",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", t, s, s, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", c])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
            helper.make_tensor("w", TensorProto.FLOAT, [3, c], weights.ravel().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, meta.to_json()
    onnx.save(model, str(path))
    return path


def with_metadata(src, dst, **changes):
    """A copy of an ONNX file whose embedded edgevid metadata has ``changes`` applied."""
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == ONNX_META_KEY:
            prop.value = ModelMeta.from_json(prop.value).replace(**changes).to_json()
    onnx.save(model, str(dst))
    return dst


def test_predict_matches_a_direct_session(tiny_onnx, media_dir):
    import onnxruntime as ort

    frames, _ = read_video(media_dir / "carphone_pristine.mp4")
    clf = Classifier(tiny_onnx, device="cpu")
    meta = clf.meta
    pred = clf.predict(frames)
    clip = frames[uniform_indices(len(frames), meta.num_frames)]
    x = preprocess_clip(clip, meta.image_size, meta.mean, meta.std)[None]  # (1, T, 3, S, S)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    want = softmax(sess.run(None, {"pixel_values": x})[0])[0]
    np.testing.assert_allclose(pred.probs, want, rtol=1e-5, atol=1e-6)
    assert pred.label == meta.labels[int(np.argmax(want))]
    assert pred.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert clf.backend.name == "onnxruntime[CPUExecutionProvider]"


def test_batched_predict_equals_one_by_one(tiny_onnx, media_dir):
    frames, _ = read_video(media_dir / "bikes.mp4")
    clf = Classifier(tiny_onnx)
    a, b = frames[:40], frames[100:140]
    batch = clf.predict(np.stack([a, b]))
    for got, clip in zip(batch, (a, b), strict=True):
        np.testing.assert_allclose(got.probs, clf.predict(clip).probs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("batched_ms", "split_ms", "split"),
    [(100.0, 60.0, True), (100.0, 96.0, False), (100.0, 100.0, False), (60.0, 100.0, False)],
)
def test_several_clips_are_split_only_when_that_measured_clearly_faster(
    batched_ms, split_ms, split
):
    from edgevid.runtime.backends.base import BatchChoice

    choice = BatchChoice.decide(2, batched_ms / 1e3, split_ms / 1e3)
    assert (choice.split, choice.batched_ms, choice.split_ms) == (split, batched_ms, split_ms)


def test_auto_batching_decides_on_its_own_calls_and_changes_no_result(tiny_onnx):
    """A real ONNX Runtime session: "auto" makes no extra call. Its first call of 3 clips is
    one batched call (warm-up), the second three calls of one, the third batched again; the
    two timed ones decide every later call of 3. Every mode gives the batch's logits."""
    backend = load_backend(tiny_onnx, device="cpu")
    meta = backend.meta
    x = np.random.default_rng(0).standard_normal(
        (5, meta.num_frames, 3, meta.image_size, meta.image_size), dtype=np.float32
    )
    reference = backend.run(x[:3])  # a backend alone batches ("batch")
    calls: list[int] = []
    real_run = backend._run

    def counting_run(batch):
        calls.append(len(batch))
        return real_run(batch)

    backend._run = counting_run
    backend.batching = "auto"
    outputs = [backend.run(x[:3]) for _ in range(3)]
    assert calls == [3, 1, 1, 1, 3]  # the trial: batched, split, batched
    choice = backend.batch_choices[3]
    assert choice.batch == 3 and choice.batched_ms > 0 and choice.split_ms > 0
    assert choice.split == (choice.split_ms < 0.95 * choice.batched_ms)
    calls.clear()
    outputs.append(backend.run(x[:3]))
    assert calls == ([1, 1, 1] if choice.split else [3])  # decided: no more trials
    backend.batching = "split"
    outputs.append(backend.run(x[:3]))
    for got in outputs:
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)
    backend.batching, backend.max_batch = "auto", 2  # 5 clips in calls of at most 2
    capped = backend.run(x)
    assert capped.shape == (5, meta.num_classes)
    np.testing.assert_allclose(capped[:3], reference, rtol=1e-4, atol=1e-5)


def test_uint8_input_graph_skips_host_normalisation(tmp_path):
    meta = ModelMeta(labels=LABELS, num_frames=4, image_size=16, input_format="uint8")
    w = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], np.float32) / 50
    path = uint8_graph(tmp_path / "raw.onnx", meta, w)
    clf = Classifier(path)
    assert clf.backend.input_dtype == np.uint8
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (9, 24, 30, 3), dtype=np.uint8)
    pred = clf.predict(frames)
    prepared = np.stack([prepare_frame(frames[i], 16) for i in uniform_indices(9, 4)])
    want = softmax(prepared.reshape(-1, 3).astype(np.float64).mean(0) @ w)
    np.testing.assert_allclose(pred.probs, want, rtol=1e-5)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"num_frames": 16}, r"input shape .* does not match"),
        ({"image_size": 64}, r"input shape .* does not match"),
        ({"labels": ["x", "y"]}, r"output shape .* 2 labels"),
        ({"input_format": "uint8"}, r"input is 'pixel_values'"),
    ],
)
def test_metadata_that_does_not_match_the_graph(tiny_onnx, tmp_path, changes, match):
    bad = with_metadata(tiny_onnx, tmp_path / "bad.onnx", **changes)
    with pytest.raises(MetadataError, match=match):
        Classifier(bad)


def test_sidecar_is_used_when_nothing_is_embedded(tiny_onnx, tmp_path):
    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(MetadataError, match="no edgevid metadata"):
        Classifier(tmp_path / "bare.onnx")
    shutil.copy(tiny_onnx.with_suffix(".json"), tmp_path / "bare.json")
    assert (
        Classifier(tmp_path / "bare.onnx").meta.labels
        == ModelMeta.load(tiny_onnx.with_suffix(".json")).labels
    )


def test_bad_model_files(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load_backend(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="model file not found"):
        load_backend(tmp_path / "missing.onnx")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model format '.pt'"):
        load_backend(tmp_path / "m.pt")


def test_cuda_device_without_a_gpu_build_is_clear(tiny_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ModelError, match="no CUDAExecutionProvider"):
        Classifier(tiny_onnx, device="cuda")


@pytest.mark.parametrize("ext", [".engine", ".plan"])
def test_engine_files_pick_the_tensorrt_backend(ext):
    from edgevid.runtime.backends.tensorrt import TensorRTBackend

    assert backend_class(f"m{ext}") is TensorRTBackend


def build_engine(onnx_path, engine_path, meta: ModelMeta, max_batch: int = 4):
    """A TensorRT engine with a dynamic batch profile, from an edgevid ONNX graph."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    if int(trt.__version__.split(".")[0]) >= 10:  # explicit batch is the only mode
        network = builder.create_network(0)
    else:
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), parser.get_error(0)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    shape = (meta.num_frames, 3, meta.image_size, meta.image_size)
    profile.set_shape("pixel_values", (1, *shape), (1, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    engine_path.write_bytes(bytes(builder.build_serialized_network(network, config)))
    meta.save(engine_path.with_suffix(".json"))
    return engine_path


def test_tensorrt_engine_matches_onnxruntime(tiny_onnx, tmp_path, media_dir):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU machines only)")
    frames, _ = read_video(media_dir / "bikes.mp4")
    ref = Classifier(tiny_onnx, device="cpu")
    engine = build_engine(tiny_onnx, tmp_path / "tiny.engine", ref.meta)
    trt_clf = Classifier(engine)
    assert trt_clf.backend.name == "tensorrt" and trt_clf.backend.max_batch == 4
    clips = np.stack([frames[i : i + 8] for i in range(0, 48, 8)])  # batch 6 > max 4: split
    for got, want in zip(trt_clf.predict(clips), ref.predict(clips), strict=True):
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-3)
    trt_clf.close()


def test_tensorrt_without_tensorrt_is_a_clear_error(tmp_path, tiny_onnx):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed")
    except ImportError:
        pass
    (tmp_path / "m.engine").write_bytes(b"not an engine")
    shutil.copy(tiny_onnx.with_suffix(".json"), tmp_path / "m.json")
    with pytest.raises(MissingDependencyError, match=r"edgevid\[trt\]"):
        load_backend(tmp_path / "m.engine")


@pytest.mark.slow  # the raw-input export: ~15 s
def test_raw_input_export_matches_the_float_graph(tiny_raw_onnx, tiny_onnx, media_dir):
    """A graph from `edgevid export --raw-input` (uint8 frames in, normalisation inside)
    gives the same probabilities as the float graph fed host-normalised clips."""
    raw_clf, float_clf = Classifier(tiny_raw_onnx), Classifier(tiny_onnx)
    assert raw_clf.meta.input_format == "uint8" and raw_clf.backend.input_name == "frames"
    frames, _ = read_video(media_dir / "bikes.mp4")
    clips = np.stack([frames[:40], frames[200:240]])  # (2, N, H, W, 3)
    for a, b in zip(raw_clf.predict(clips), float_clf.predict(clips), strict=True):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
