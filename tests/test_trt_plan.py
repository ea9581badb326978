"""Every rule of the TensorRT build plan, checked without TensorRT or a GPU.

Parametrized over the precision table, TensorRT 8.6 / 10.3 / 10.7 / 10.12 / 11.0, GPU and
DLA, batch profiles. The API calls the plan names are checked where TensorRT is installed
(tests/test_export_trt.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgevid.core.precision import PRECISIONS, Tolerance, get_precision
from edgevid.errors import ExportError
from edgevid.runtime.backends.trt_plan import (
    BuildPlan,
    BuildRequest,
    DeviceFacts,
    Skipped,
    check_dla_batch,
    chunks,
    engine_key,
    engine_precision,
    parity_problem,
    parse_batch,
    plan_build,
    run_in_chunks,
    version_tuple,
)

VERSIONS = {"8.6": "8.6.2.3", "10.3": "10.3.0.30", "10.7": "10.7.0.23", "10.12": "10.12.0.36",
            "11.0": "11.0.0.9"}  # fmt: skip
GPU_ONLY = ("10.12", "11.0")  # after 10.7: no DLA
PROFILES = [(1, 1, 8), (1, 4, 8), (2, 2, 2), (4, 4, 4), (8, 8, 8)]
TRT_GRAPHS = [n for n, p in PRECISIONS.items() if not p.fusions]  # fp32, fp16, bf16, int8-static
CPU_GRAPHS = [n for n, p in PRECISIONS.items() if p.fusions]  # int8-dynamic, int8-cpu


def orin(version: str = "10.3", dla_cores: int = 2, sms: int = 16) -> DeviceFacts:
    return DeviceFacts(VERSIONS[version], "Orin", (8, 7), sms, dla_cores)


def plan_or_error(graph, request, facts):
    try:
        return plan_build(graph, request, facts)
    except ExportError as e:
        return e


CASES = list(
    itertools.product(TRT_GRAPHS, [None, "fp16"], VERSIONS, [None, 0, 1], PROFILES)
)  # graph, asked precision, TensorRT, DLA core, profile


@pytest.mark.parametrize(("graph", "asked", "version", "dla", "profile"), CASES)
def test_every_plan_follows_the_rules(graph, asked, version, dla, profile):
    facts = orin(version)
    request = BuildRequest(precision=asked, batch=profile, dla_core=dla)
    got = plan_or_error(graph, request, facts)
    major = facts.version[0]
    if asked == "fp16" and graph not in ("fp32", "fp16"):  # only FP32 -> FP16 on the device
        assert isinstance(got, ExportError) and "converts FP32 to FP16 only" in str(got)
        return
    precision = "fp16" if asked == "fp16" else graph
    if facts.version < get_precision(precision).trt_min:  # BF16 on 8.6
        assert isinstance(got, ExportError) and "has no BF16" in str(got)
        return
    if dla is not None:
        if profile[0] != profile[2]:  # DLA: one batch size
            assert isinstance(got, ExportError) and "one batch size" in str(got)
            return
        if version in GPU_ONLY:
            assert isinstance(got, ExportError) and "no DLA support" in str(got)
            return
        if not get_precision(precision).dla:  # FP32, BF16: skipped with a line, not an error
            assert isinstance(got, Skipped) and "FP16 or INT8 only" in got.reason
            return
    assert isinstance(got, BuildPlan), got
    assert got.precision == precision and got.graph_precision == graph
    assert got.convert_fp16 == (graph == "fp32" and asked == "fp16")
    assert got.profile == profile and got.dla_core == dla
    assert got.gpu_fallback == (dla is not None)  # every DLA build has GPU fallback
    # typing: strongly typed never carries precision flags or pinned layers
    assert not (got.strongly_typed and (got.flags or got.pin_fp32))
    assert got.explicit_batch == (major < 10)
    if major >= 11:
        assert got.strongly_typed
    elif dla is not None or major < 10:  # the documented DLA build, and 8.x: weakly typed
        assert not got.strongly_typed and got.flags == get_precision(precision).trt_flags
    elif precision == "int8-static":  # Q/DQ graph on 10.x: FP16 + INT8 for the rest
        assert not got.strongly_typed and got.flags == ("FP16", "INT8")
    else:  # FP32/FP16/BF16 on 10.x: the graph's types are the precision
        assert got.strongly_typed
    assert got.pin_fp32 == (not got.strongly_typed and precision == "fp16")
    assert got.tolerance == get_precision(precision).tolerance


@pytest.mark.parametrize("graph", CPU_GRAPHS)
@pytest.mark.parametrize("version", VERSIONS)
def test_cpu_graphs_are_never_planned(graph, version):
    with pytest.raises(ExportError, match="rewritten for CPU engines"):
        plan_build(graph, BuildRequest(), orin(version))


def test_fp32_on_dla_is_skipped_fp16_converted_instead():
    skipped = plan_build("fp32", BuildRequest(batch=(2, 2, 2), dla_core=0), orin())
    assert isinstance(skipped, Skipped) and "--precision fp16" in skipped.reason
    plan = plan_build("fp32", BuildRequest("fp16", (2, 2, 2), 0), orin())
    assert plan.convert_fp16 and plan.flags == ("FP16", "OBEY_PRECISION_CONSTRAINTS")
    assert plan.dla_core == 0 and plan.gpu_fallback and plan.profile == (2, 2, 2)


def test_an_fp32_graph_builds_as_exported_unless_fp16_is_asked():
    plan = plan_build("fp32", BuildRequest(), orin("10.3"))
    assert plan.precision == "fp32" and plan.strongly_typed and not plan.flags
    assert not plan.convert_fp16  # no weakly typed FP16 flag on an FP32 graph, ever
    fp16 = plan_build("fp32", BuildRequest("fp16"), orin("10.3"))
    assert fp16.convert_fp16 and fp16.strongly_typed and fp16.precision == "fp16"
    assert "FP32" in fp16.notes[0]


def test_dla_device_rules():
    with pytest.raises(ExportError, match="this device has 0"):  # an Orin Nano: no DLA
        plan_build("fp16", BuildRequest(batch=(1, 1, 1), dla_core=0), orin(dla_cores=0))
    with pytest.raises(ExportError, match="DLA core 2 requested, this device has 2"):
        plan_build("fp16", BuildRequest(batch=(1, 1, 1), dla_core=2), orin())
    with pytest.raises(ExportError, match="too old"):
        plan_build("fp16", BuildRequest(), DeviceFacts("8.4.1", "Xavier", (7, 2), 8, 2))


def test_precision_asked_against_the_graph():
    assert engine_precision("fp32", None) == ("fp32", False)
    assert engine_precision("fp32", "auto") == ("fp32", False)
    assert engine_precision("fp16", "fp16") == ("fp16", False)
    assert engine_precision("fp32", "fp16") == ("fp16", True)
    for graph, asked in [("fp16", "fp32"), ("int8-static", "fp16"), ("fp32", "int8-static")]:
        with pytest.raises(ExportError, match="converts FP32 to FP16 only"):
            engine_precision(graph, asked)
    with pytest.raises(ExportError, match="unknown precision 'fp8'"):
        plan_build("fp8", BuildRequest(), orin())


# --- run time: the profile decides -----------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES + [(2, 4, 8), (3, 3, 5)])
@pytest.mark.parametrize("rows", range(1, 20))
def test_chunks_pad_to_min_and_split_above_max(profile, rows):
    lo, _, hi = profile
    parts = chunks(rows, profile)
    covered = [i for start, stop, _ in parts for i in range(start, stop)]
    assert covered == list(range(rows))  # every row once, in order
    for start, stop, batch in parts:
        assert lo <= batch <= hi  # every call is a batch the profile allows
        assert batch == max(lo, stop - start)  # padded only up to MIN
    assert len(parts) == -(-rows // hi)  # split only above MAX


def test_one_camera_on_a_min_2_engine_is_padded():
    """The README's --batch 2:2:2 (every DLA engine) with one stream: one padded call."""
    assert chunks(1, (2, 2, 2)) == [(0, 1, 2)]
    assert chunks(17, (1, 1, 8)) == [(0, 8, 8), (8, 16, 8), (16, 17, 1)]


@pytest.mark.parametrize("profile", [(2, 2, 2), (1, 1, 3), (4, 4, 4)])
def test_run_in_chunks_with_onnx_runtime_as_the_engine(tiny_onnx, profile):
    """A real ONNX Runtime session stands in for the engine: it only ever sees batches the
    profile allows, and the logits are the unchunked run's."""
    from edgevid.runtime.backends.onnx_engine import probe_clip
    from edgevid.runtime.backends.onnxruntime import OnnxRuntimeBackend

    lo, _, hi = profile
    with OnnxRuntimeBackend(tiny_onnx, device="cpu") as ort:
        seen = []

        def engine(x):
            seen.append(len(x))
            return ort._run(x)

        x = probe_clip(ort.meta, rows=5)
        got = run_in_chunks(x, profile, engine)
        np.testing.assert_allclose(got, ort._run(x), rtol=1e-4, atol=1e-5)
        assert got.shape == (5, ort.meta.num_classes)
        assert all(lo <= b <= hi for b in seen)
        one = run_in_chunks(x[:1], profile, engine)  # one camera
        np.testing.assert_allclose(one, ort._run(x[:1]), rtol=1e-4, atol=1e-5)


# --- the cache key ----------------------------------------------------------------------------
def test_the_key_changes_with_each_input():
    facts = orin()
    plan = plan_build("fp16", BuildRequest(), facts)
    base = engine_key("a" * 64, plan, facts)
    dla0, dla1 = (plan_build("fp16", BuildRequest(batch=(2, 2, 2), dla_core=c), facts)
                  for c in (0, 1))  # fmt: skip
    variants = [
        engine_key("b" * 64, plan, facts),  # another graph
        engine_key("a" * 64, plan, orin("10.7")),  # another TensorRT
        engine_key("a" * 64, plan, DeviceFacts(facts.tensorrt, "Orin", (8, 6), 16, 2)),  # SM
        engine_key("a" * 64, plan, orin(sms=8)),  # an Orin Nano: "Orin" too, half the SMs
        engine_key("a" * 64, plan_build("fp16", BuildRequest(batch=(1, 2, 4)), facts), facts),
        engine_key("a" * 64, plan_build("fp16", BuildRequest(workspace_mb=512), facts), facts),
        engine_key("a" * 64, dla0, facts),
        engine_key("a" * 64, dla1, facts),
        engine_key("a" * 64, plan_build("fp32", BuildRequest("fp16"), facts), facts),
        engine_key("a" * 64, plan_build("fp32", BuildRequest(), facts), facts),
    ]
    digests = {base.digest(), *(k.digest() for k in variants)}
    assert len(digests) == 1 + len(variants)
    assert engine_key("a" * 64, plan, facts) == base and len(base.digest()) == 16
    assert base.compute_capability == "8.7" and base.device == "Orin, 16 SMs"


@pytest.mark.parametrize("dla", [None, 0])
def test_a_plan_survives_json_into_the_build_process(dla):
    import json

    plan = plan_build("fp32", BuildRequest("fp16", (2, 2, 2), dla), orin("8.6"))
    again = BuildPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.digest() == plan.digest() and again.notes == plan.notes


def test_plan_digest_ignores_notes_only():
    a = plan_build("fp32", BuildRequest("fp16"), orin())
    b = plan_build("fp16", BuildRequest(), orin())
    assert a.digest() != b.digest()  # converted on the device vs exported FP16
    assert a.digest() == plan_build("fp32", BuildRequest("fp16"), orin()).digest()


# --- small rules ------------------------------------------------------------------------------
def test_version_tuple():
    assert version_tuple("10.3.0.26") == (10, 3)
    assert version_tuple("8.5.2") == (8, 5)
    assert version_tuple("11") == (11, 0)
    with pytest.raises(ExportError, match="unrecognised"):
        version_tuple("ten")


def test_batch_text():
    assert parse_batch("1:4:8") == (1, 4, 8) and parse_batch("8") == (1, 8, 8)
    for bad in ("4:2:8", "0:1:1", "a:b:c", "1:2"):
        with pytest.raises(ExportError, match="--batch"):
            parse_batch(bad)
    assert check_dla_batch((4, 4, 4)) == (4, 4, 4)
    with pytest.raises(ExportError, match="use --batch 8:8:8"):
        check_dla_batch((1, 2, 8))


def test_parity_judges_cosine_and_error():
    rng = np.random.default_rng(0)
    ref = 100 * rng.standard_normal((1, 5))
    fp32 = get_precision("fp32").tolerance
    assert parity_problem(ref, ref + 1e-4, fp32) is None
    assert "logit error" in parity_problem(ref, ref + 5e-2, fp32)  # cosine still 0.99999+
    assert "cosine" in parity_problem(ref, -ref, get_precision("fp16").tolerance)
    assert "NaN" in parity_problem(ref, ref * np.nan, Tolerance())
    assert "shape" in parity_problem(ref, ref[:, :3], Tolerance())
