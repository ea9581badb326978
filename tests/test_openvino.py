"""The OpenVINO backend: parity with ONNX Runtime per precision, the bf16 path, the auto
choice between the two CPU engines, and its errors (no openvino, no bf16 on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("onnx")

from edgevid.core.precision import EXPORTED, PRECISIONS, get_precision  # noqa: E402
from edgevid.errors import ModelError  # noqa: E402
from edgevid.export.verify import compare, judge  # noqa: E402
from edgevid.runtime.backends import load_backend  # noqa: E402
from edgevid.runtime.backends.choice import cache_path  # noqa: E402
from tests.conftest import read_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEVID_CPU_BACKEND": "auto"}


def openvino_at(path: Path, precision: str):
    """The OpenVINO backend at ``precision``; None where this CPU has no BF16 and bf16 was
    asked for, after checking that it is refused in one clear line (not silently run)."""
    import openvino as ov

    if precision == "bf16" and "BF16" not in ov.Core().get_property(
        "CPU", "OPTIMIZATION_CAPABILITIES"
    ):
        with pytest.raises(ModelError, match="cannot run bf16"):
            load_backend(path, "openvino", precision=precision)
        return None
    return load_backend(path, "openvino", precision=precision)


def onnxruntime_logits(path: Path, x: np.ndarray, graph: str) -> np.ndarray:
    """ONNX Runtime's logits for ``x``, with the INT8 kernels OpenVINO's are equal to: its
    default ones, which on an x86 CPU without VNNI add the products in 16 bits as OpenVINO's
    do (the backend takes exact, slower ones there, which an untrained model's near-tied
    logits tell apart: on an AVX2 AMD EPYC, top-1 agreement with OpenVINO fell to 83%, cosine
    0.993, while OpenVINO and these kernels agreed at cosine 0.9996)."""
    if get_precision(graph).column != "int8":
        return load_backend(path, "cpu").run(x)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def graphs(tiny_onnx, synth_root, tmp_path_factory) -> dict[str, Path]:
    """The tiny FP32 graph and its version in every precision the export writes."""
    from edgevid.calib.quantize import QUANTIZERS
    from edgevid.core.clips import dataset_clips
    from edgevid.core.onnx_file import read_metadata
    from edgevid.export.fp16 import onnx_to_fp16

    tmp = tmp_path_factory.mktemp("ov")
    calib = dataset_clips(synth_root, read_metadata(tiny_onnx), 8)
    graphs = {"fp32": tiny_onnx, "fp16": onnx_to_fp16(tiny_onnx, tmp / "fp16.onnx")}
    for name, quantize in QUANTIZERS.items():
        args = (calib,) if PRECISIONS[name].calibrated else ()
        graphs[name] = quantize(tiny_onnx, tmp / f"{name}.onnx", *args)
    assert set(graphs) == {"fp32", *EXPORTED}  # a new exported precision needs a line here
    return graphs


@pytest.fixture(scope="module")
def clips_input(tiny_onnx, synth_root) -> np.ndarray:
    """Real decoded test clips of the synthetic dataset as the graph takes them."""
    from edgevid.core.clips import dataset_clips, graph_input
    from edgevid.core.onnx_file import read_metadata

    meta = read_metadata(tiny_onnx)
    return graph_input(dataset_clips(synth_root, meta, 10, split="test").frames, meta)


@pytest.mark.parametrize("graph", ["fp32", *EXPORTED])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_matches_onnxruntime(graphs, clips_input, graph, precision):
    ort_logits = onnxruntime_logits(graphs[graph], clips_input, graph)
    ov = openvino_at(graphs[graph], precision)
    if ov is None:
        return  # this CPU has no BF16: refused, as checked
    assert ov.name == f"openvino[CPU,{precision}]" and ov.precision == precision
    stats = compare(ort_logits, ov.run(clips_input))
    # an FP32 run of a graph computes what ONNX Runtime computes; bf16 is judged by its own
    # tolerance (the calibration-free path), the INT8 graphs by theirs
    tolerance = get_precision("bf16" if precision == "bf16" else graph).tolerance
    assert not judge(stats, tolerance), (graph, precision, stats)
    if graph == "fp32" and precision == "fp32":
        assert stats["max_abs"] < 1e-4 * stats["scale"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["tiny-timesformer", "tiny-scratch"])
def test_openvino_matches_onnxruntime_on_the_other_tiny_variants(variant, tmp_path, synth_root):
    import torch

    from edgevid.calib.quantize import QUANTIZERS
    from edgevid.core.clips import dataset_clips, graph_input
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import meta_for
    from edgevid.train.models import create_model

    from .conftest import SYNTH_LABELS

    torch.manual_seed(0)
    model = create_model(variant, labels=SYNTH_LABELS).eval()
    meta = meta_for(model)
    fp32 = torch_to_onnx(model, meta, tmp_path / f"{variant}.onnx")
    calib = dataset_clips(synth_root, meta, 8)
    graphs = {"fp32": fp32}
    for name, quantize in QUANTIZERS.items():  # every INT8 graph the export writes
        args = (calib,) if PRECISIONS[name].calibrated else ()
        graphs[name] = quantize(fp32, tmp_path / f"{variant}-{name}.onnx", *args)
    x = graph_input(dataset_clips(synth_root, meta, 6, split="test").frames, meta)
    for graph, path in graphs.items():
        for precision in ("fp32", "bf16"):
            ov = openvino_at(path, precision)
            if ov is None:
                continue  # this CPU has no BF16: refused, as checked
            stats = compare(onnxruntime_logits(path, x, graph), ov.run(x))
            tol = get_precision("bf16" if (graph, precision) == ("fp32", "bf16") else graph)
            assert not judge(stats, tol.tolerance), (path.name, precision, stats)


NAMES = {  # auto-choice candidate -> the backend's name once loaded
    "onnxruntime": "onnxruntime[CPUExecutionProvider]",
    "openvino-fp32": "openvino[CPU,fp32]",
    "openvino-bf16": "openvino[CPU,bf16]",
}


def test_auto_takes_the_faster_backend_measured_once_and_cached(tiny_onnx, tmp_path, monkeypatch):
    from edgevid.runtime.backends.choice import timed_candidates

    monkeypatch.setenv("EDGEVID_CPU_BACKEND", "auto")
    model = tmp_path / tiny_onnx.name
    model.write_bytes(tiny_onnx.read_bytes())
    first = load_backend(model)  # measures every candidate
    cache = json.loads(cache_path(model).read_text())
    assert set(cache["ms"]) == set(timed_candidates()) >= {"onnxruntime", "openvino-fp32"}
    winner = min(cache["ms"], key=cache["ms"].get)
    assert cache["backend"] == winner and first.name == NAMES[winner]
    assert first.selection.startswith(f"backend: {winner} (measured")
    again = load_backend(model)
    assert again.name == first.name and again.selection.startswith(f"backend: {winner} (cached")
    # the cache decides: a recorded win for another candidate is followed without measuring
    other = "openvino-fp32" if winner == "onnxruntime" else "onnxruntime"
    cache.update(backend=other, ms={other: 1.0, winner: 2.0})
    cache_path(model).write_text(json.dumps(cache))
    assert load_backend(model).name == NAMES[other]
    # another graph in the same file (new mtime/size) is measured again
    os.utime(model, ns=(1, 1))
    remeasured = load_backend(model)
    now = json.loads(cache_path(model).read_text())
    assert now["key"]["mtime_ns"] == 1 and now["ms"] != cache["ms"]
    assert remeasured.selection.startswith(f"backend: {now['backend']} (measured")
    assert remeasured.name == NAMES[now["backend"]]
    # other threads: measured again too (the key records them)
    assert "(measured" in load_backend(model, threads=1).selection
    # the environment overrides the measurement
    for name in ("openvino-fp32", "onnxruntime"):
        monkeypatch.setenv("EDGEVID_CPU_BACKEND", name)
        backend = load_backend(model)
        assert backend.selection == f"backend: {name} (EDGEVID_CPU_BACKEND)"
        assert backend.name == NAMES[name]
    monkeypatch.setenv("EDGEVID_CPU_BACKEND", "tflite")
    with pytest.raises(ModelError, match="EDGEVID_CPU_BACKEND='tflite'"):
        load_backend(model)


def test_auto_gives_a_graph_with_contrib_ops_to_onnxruntime_untimed(
    tiny_onnx, tmp_path, monkeypatch
):
    from edgevid.calib.quantize import onnx_to_int8_dynamic
    from edgevid.core.onnx_file import read_metadata
    from edgevid.runtime.backends.choice import has_contrib_ops

    monkeypatch.setenv("EDGEVID_CPU_BACKEND", "auto")
    fused = onnx_to_int8_dynamic(tiny_onnx, tmp_path / "fused.onnx")
    plain = onnx_to_int8_dynamic(tiny_onnx, tmp_path / "plain.onnx", fusions=())
    assert has_contrib_ops(fused) and not has_contrib_ops(plain)
    assert read_metadata(fused).extra["calibration"]["contrib_ops"] == [
        "Gelu",
        "MultiHeadAttention",
    ]
    assert not has_contrib_ops(tiny_onnx)  # FP32: no calibration record at all
    backend = load_backend(fused)
    assert backend.name == NAMES["onnxruntime"]
    assert backend.selection == "backend: onnxruntime (ONNX Runtime contrib ops)"
    assert not cache_path(fused).exists()  # nothing was timed, nothing cached
    # without the sidecar the metadata is unknown to the rule: measured like any graph
    fused.with_suffix(".json").unlink()
    assert not has_contrib_ops(fused)


def test_precision_hint_picks_openvino_and_is_refused_elsewhere(tiny_onnx):
    assert load_backend(tiny_onnx, precision="fp32").name == "openvino[CPU,fp32]"
    with pytest.raises(ModelError, match="--device openvino"):
        load_backend(tiny_onnx, "cpu", precision="bf16")
    with pytest.raises(ModelError, match="unknown precision"):
        load_backend(tiny_onnx, precision="int4")


def test_forced_bf16_on_a_cpu_without_bf16_is_refused():
    import openvino as ov

    from edgevid.runtime.backends.openvino import CpuInfo, cpu_info, resolve_precision

    real = cpu_info(ov.Core())  # this CPU's real capabilities, then the same CPU minus BF16
    no_bf16 = CpuInfo(real.name, tuple(c for c in real.capabilities if c != "BF16"))
    with pytest.raises(ModelError, match=r"cannot run bf16 \(OpenVINO OPTIMIZATION_CAPABILITIES"):
        resolve_precision("bf16", no_bf16)
    assert resolve_precision("auto", no_bf16) == "fp32"  # auto falls back, stated in the name
    assert resolve_precision("auto", real) == ("bf16" if "BF16" in real.capabilities else "fp32")


BLOCK_OPENVINO = "import sys, runpy; sys.modules['openvino'] = None; "


def test_missing_openvino_is_one_clear_line(tiny_onnx, media_dir):
    main = BLOCK_OPENVINO + "runpy.run_module('edgevid', run_name='__main__')"
    cmd = [sys.executable, "-c", main, "run", "-s", str(media_dir / "carphone_pristine.mp4"),
           "-m", str(tiny_onnx), "--device", "openvino", "--max-frames", "16", "-q"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode != 0 and p.stdout == ""
    [line] = p.stderr.strip().splitlines()  # one line, no traceback
    assert "'openvino' is needed for the OpenVINO backend" in line
    assert "pip install 'edgevid[openvino]'" in line
    # --device auto without openvino: ONNX Runtime, nothing to choose from
    code = BLOCK_OPENVINO + (
        "from edgevid.runtime.backends import load_backend; "
        f"b = load_backend({str(tiny_onnx)!r}); print(b.name, '|', b.selection)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                       timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert (
        p.stdout.strip()
        == "onnxruntime[CPUExecutionProvider] | backend: onnxruntime (only candidate)"
    )


def test_run_with_openvino_end_to_end_without_torch(tiny_onnx, media_dir):
    """The runtime streams a real clip through OpenVINO and never imports torch."""
    code = (
        "import sys\n"
        "from edgevid.runtime.classifier import Classifier\n"
        "from edgevid.runtime.streamer import stream\n"
        f"clf = Classifier({str(tiny_onnx)!r}, device='openvino')\n"
        f"results = list(stream({str(media_dir / 'bikes.mp4')!r}, clf, max_frames=40))\n"
        "assert results and all(0 <= r.score <= 1 for r in results), results\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(len(results), bad)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                       timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[1:] == ["[]"]


def test_cli_run_prints_the_auto_choice_once(tiny_onnx, media_dir, tmp_path):
    model = tmp_path / tiny_onnx.name
    model.write_bytes(tiny_onnx.read_bytes())
    cmd = [sys.executable, "-m", "edgevid", "run", "-s", str(media_dir / "bikes.mp4"),
           "-m", str(model), "--max-frames", "24"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("backend: ")]
    assert len(lines) == 1 and "(measured: " in lines[0]
    assert [r["label"] for r in read_records(p.stdout, "result")]


def test_export_openvino_writes_verified_ir_that_runs_like_the_graph(
    tiny_checkpoint, synth_root, tmp_path
):
    from click.testing import CliRunner

    from edgevid.cli import main

    out = tmp_path / "out"
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--int8", "cpu", "--openvino",
            "--calib-data", str(synth_root), "--calib-clips", "8"]  # fmt: skip
    r = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    stems = ("tiny-prune8", "tiny-prune8-int8-cpu")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{s}{e}" for s in stems for e in (".onnx", ".json", ".xml", ".bin"))
    # verified as OpenVINO runs it: 4 rows, the IR rows name the precision they ran at
    assert "FAIL" not in r.output and r.output.count(" ok") == 4
    assert "fp32@ov-bf16" in r.output or "fp32@ov-fp32" in r.output
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 3, 32, 32), dtype=np.float32)
    for stem in stems:  # the IR is the graph: same logits at f32, same metadata
        ir = load_backend(out / f"{stem}.xml", precision="fp32")
        graph = load_backend(out / f"{stem}.onnx", "openvino", precision="fp32")
        assert ir.name == "openvino[CPU,fp32]" and ir.meta == graph.meta
        np.testing.assert_allclose(ir.run(x), graph.run(x), atol=1e-5)
    assert load_backend(out / "tiny-prune8.xml").name.startswith("openvino[CPU,")  # .xml: OV


def test_each_candidate_is_timed_in_a_child_process(tiny_onnx, tmp_path):
    from edgevid.runtime.backends.choice import time_in_child

    ms = time_in_child(tiny_onnx, "openvino-fp32", threads=1)
    assert 0 < ms < 10_000
    r = subprocess.run([sys.executable, "-m", "edgevid", "time-backend", str(tiny_onnx), "tvm"],
                       capture_output=True, text=True, env=ENV)  # fmt: skip
    assert r.returncode == 2 and "choose from onnxruntime" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(ModelError) as e:  # the child's one line, without its "edgevid:" prefix
        time_in_child(broken, "onnxruntime", threads=1)
    assert str(e.value).startswith(str(broken)) and "\n" not in str(e.value)


def test_auto_on_an_ir_times_openvino_precisions_only(tiny_onnx, tmp_path, monkeypatch):
    from edgevid.export.openvino_ir import onnx_to_ir
    from edgevid.runtime.backends.choice import timed_candidates

    ir = onnx_to_ir(tiny_onnx, tmp_path / "tiny.xml")
    (tmp_path / "tiny.json").write_bytes(tiny_onnx.with_suffix(".json").read_bytes())
    # the suite's pin (onnxruntime) cannot apply to an IR: OpenVINO at its default precision
    assert load_backend(ir).selection == "backend: openvino (EDGEVID_CPU_BACKEND)"
    monkeypatch.setenv("EDGEVID_CPU_BACKEND", "auto")
    backend = load_backend(ir)
    cache = json.loads(cache_path(ir).read_text())
    assert set(cache["ms"]) == set(timed_candidates(ir=True)) and "onnxruntime" not in cache["ms"]
    assert backend.name == NAMES[cache["backend"]] and "(measured" in backend.selection
