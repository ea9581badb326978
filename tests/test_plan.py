"""`edgevid plan`: the pure selection (a table of measured rows in, the pick out), the search's
pruning, the candidate space, the report files, the per-candidate cache (a real child-process
measurement), and end to end: `plan --quick`, Ctrl-C and resume, then `edgevid run` with the
exact command it printed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgevid.errors import DataError
from edgevid.plan import report, search
from edgevid.plan.search import Candidate, Constraints, Row
from edgevid.plan.space import BACKENDS, candidates
from tests.conftest import SYNTH_LABELS, needs_torch, with_stop_signals

BUDGET = Constraints(budget_ms=100.0, max_drop=1.0)


def row(drop=0, precision="fp32", backend="onnxruntime", threads=2, acc=0.9, p95=50.0,
        size=10.0, rss=100.0, p50=None) -> Row:  # fmt: skip
    p50 = p95 * 0.9 if p50 is None else p50
    return Row(Candidate(drop, precision, backend, threads), acc, p50, p95, 1e3 / p50, rss, size)


# --- the budget -----------------------------------------------------------------------------
def test_budget_is_every_k_frames_at_the_camera_rate_unless_given():
    assert search.budget_ms(None, fps=30, every=8) == pytest.approx(266.667, abs=1e-3)
    assert search.budget_ms(120, fps=30, every=8) == 120.0
    with pytest.raises(ValueError):
        search.budget_ms(None, fps=None, every=8)


# --- selection ------------------------------------------------------------------------------
def test_the_most_accurate_feasible_candidate_wins_not_the_fastest():
    rows = [row(0, acc=0.90, p95=150), row(4, acc=0.895, p95=80), row(8, acc=0.85, p95=20)]
    sel = search.select(rows, BUDGET, baseline=0.90)
    assert sel.pick is rows[1]  # the unpruned one is over budget, prune8 drops 5 points
    assert [r.name for r in sel.feasible] == [rows[1].name]
    assert sel.miss is None and sel.message.startswith("recommended: prune4 fp32")


def test_ties_go_to_lower_p95_then_smaller_file_then_name():
    a = row(4, "fp32", acc=0.9, p95=60, size=20)
    b = row(4, "int8-dynamic", acc=0.9, p95=40, size=20)
    c = row(4, "int8-cpu", acc=0.9, p95=40, size=5)
    d = row(4, "int8-static", acc=0.9, p95=40, size=5)
    assert search.select([a, b], BUDGET, 0.9).pick is b  # same accuracy: faster
    assert search.select([a, b, c], BUDGET, 0.9).pick is c  # same p95: smaller file
    assert search.select([d, c], BUDGET, 0.9).pick is c  # all equal: by name, stable
    assert search.select([c, d], BUDGET, 0.9).pick is c
    # accuracies equal up to float noise (two ways of computing 9/10) are a tie too
    e = Row(Candidate(2, "fp32", "onnxruntime", 2), 0.1 * 9, 30, 30, 33, 100, 30)
    f = Row(Candidate(2, "fp32", "openvino-fp32", 2), 9 / 10 + 1e-12, 45, 45, 22, 100, 30)
    assert search.select([f, e], BUDGET, 0.9).pick is e


def test_no_feasible_candidate_names_the_nearest_miss_plainly():
    slow_exact = row(0, acc=0.90, p95=300)
    slower_exact = row(2, acc=0.90, p95=400)
    fast_bad = row(8, acc=0.70, p95=20)
    sel = search.select([slow_exact, slower_exact, fast_bad], BUDGET, baseline=0.90)
    assert sel.pick is None and sel.feasible == []
    assert sel.miss is slow_exact  # the fastest within the accuracy floor
    assert "no candidate meets p95 <= 100.0 ms at <= 1 pts drop" in sel.message
    assert "fastest within the floor" in sel.message and "p95 300.0 ms > 100.0" in sel.message
    # nothing within the floor: the most accurate within the budget
    sel = search.select([fast_bad, row(6, acc=0.8, p95=90)], BUDGET, baseline=0.95)
    assert sel.miss.candidate.drop == 6 and "most accurate within the budget" in sel.message
    # nothing within either: the fastest overall
    sel = search.select([row(0, acc=0.5, p95=300), row(8, acc=0.4, p95=200)], BUDGET, 0.9)
    assert sel.miss.candidate.drop == 8 and "fastest overall" in sel.message
    assert search.select([], BUDGET, 0.9).message == "no candidate was measured"


def test_memory_and_unmeasured_accuracy_make_a_candidate_infeasible():
    c = Constraints(budget_ms=100, max_drop=1.0, memory_mb=500)
    big = row(0, acc=0.9, p95=50, rss=800)
    small = row(4, acc=0.895, p95=60, rss=300)
    assert search.select([big, small], c, 0.9).pick is small
    assert search.violations(big, c, 0.9) == ["peak RSS 800 MB > 500 MB"]
    assert search.violations(row(acc=None), c, 0.9) == ["accuracy not measured"]
    assert search.violations(row(acc=0.95), c, 0.9) == []  # a gain is no drop


def test_pareto_front_keeps_only_undominated_rows_fastest_first():
    rows = [row(0, acc=0.9, p95=200), row(2, acc=0.9, p95=150), row(4, acc=0.88, p95=100),
            row(6, acc=0.8, p95=120), row(8, acc=0.7, p95=30), row(8, acc=None, p95=5)]  # fmt: skip
    assert [r.candidate.drop for r in search.pareto_front(rows)] == [8, 4, 2]


# --- the search's pruning -------------------------------------------------------------------
def test_search_runs_most_pruned_first_and_an_over_budget_level_skips_larger_ones():
    space = candidates([0, 4, 8], ["fp32", "int8-dynamic"], ["onnxruntime", "openvino-fp32"], [2])
    order = search.search_order(space)
    assert [k.drop for k in order] == sorted((k.drop for k in order), reverse=True)
    slow8 = row(8, "fp32", "onnxruntime", p95=150)  # prune8 FP32 on ORT: over 100 ms
    fast8 = row(8, "fp32", "openvino-fp32", p95=60)
    done = [slow8, fast8]
    skip = {k.name: search.skip_reason(k, done, BUDGET) for k in order if k.drop < 8}
    assert skip["prune4 fp32 onnxruntime x2"] == (
        "prune8 fp32 onnxruntime x2 is already over the budget (p95 150.0 ms)"
    )
    assert skip["unpruned fp32 onnxruntime x2"] is not None
    assert skip["prune4 fp32 openvino-fp32 x2"] is None  # its own prune8 was within budget
    assert skip["prune4 int8-dynamic onnxruntime x2"] is None  # another precision
    other_threads = Candidate(4, "fp32", "onnxruntime", 1)
    assert search.skip_reason(other_threads, done, BUDGET) is None  # another thread count
    # a LESS pruned model over budget says nothing about a more pruned one
    assert search.skip_reason(Candidate(8, "fp32", "onnxruntime", 2), [row(4, p95=500)],
                              BUDGET) is None  # fmt: skip
    # memory prunes the same way
    c = Constraints(budget_ms=1e9, memory_mb=200)
    assert "already needs 900 MB" in search.skip_reason(
        Candidate(2, "fp32", "onnxruntime", 2), [row(6, rss=900)], c
    )


# --- the candidate space --------------------------------------------------------------------
def test_space_pairs_each_precision_with_the_backends_that_run_it():
    space = candidates([8], ["fp32", "fp16", "int8-dynamic"], list(BACKENDS), [1, 2])
    names = {k.name for k in space}
    assert "prune8 int8-dynamic onnxruntime x2" in names
    assert not any("int8-dynamic openvino" in n for n in names)  # contrib ops: ORT only
    assert not any(k.precision == "fp16" and BACKENDS[k.backend].cpu for k in space)
    assert {k.threads for k in space if k.backend == "tensorrt"} == {None}
    assert {k.threads for k in space if k.backend == "onnxruntime"} == {1, 2}
    args = BACKENDS["openvino-bf16"].run_args(2)
    assert args == ["--device", "openvino", "--precision", "bf16", "--threads", "2"]


# --- report files ---------------------------------------------------------------------------
def test_report_writes_table_plot_and_the_run_command(tmp_path):
    rows = [row(0, acc=0.9, p95=150), row(4, acc=0.9, p95=80), row(8, acc=0.8, p95=20)]
    sel = search.select(rows, BUDGET, 0.9)
    table = report.table_markdown(rows, {"prune2 fp32 onnxruntime x2": "why"}, sel, BUDGET, 0.9)
    assert "| prune4 fp32 onnxruntime x2 | 0.900 | +0.0 |" in table
    assert "**recommended**" in table and "skipped: why" in table
    png = report.plot_pareto(rows, search.pareto_front(rows), sel, BUDGET, 0.9,
                             tmp_path / "p.png")  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temporary file left
    cmd = report.run_command(tmp_path / "m.onnx", sel.pick, ["a.mp4", "b.mp4"], every=8)
    assert cmd[:6] == ["edgevid", "run", "--source", "a.mp4", "--source", "b.mp4"]
    assert cmd[-4:] == ["--device", "cpu", "--threads", "2"]


# --- measurement and its cache (a real child process, a real ONNX Runtime session) ----------
@pytest.mark.slow
def test_a_measurement_is_cached_and_measured_again_when_the_graph_changes(tiny_onnx, tmp_path):
    from edgevid.plan.measure import cache_file, cached_row

    model = tmp_path / tiny_onnx.name
    model.write_bytes(tiny_onnx.read_bytes())
    (tmp_path / tiny_onnx.with_suffix(".json").name).write_bytes(
        tiny_onnx.with_suffix(".json").read_bytes()
    )
    cand = Candidate(8, "fp32", "onnxruntime", 1)
    first, cached = cached_row(model, cand, tmp_path / "c", streams=2, rounds=3, manifest=None)
    assert not cached and first.p95_ms >= first.p50_ms > 0 and first.accuracy is None
    assert first.size_mb > 0 and first.rss_mb > 0 and first.extra["engine"]
    again, cached = cached_row(model, cand, tmp_path / "c", streams=2, rounds=3, manifest=None)
    assert cached and again == first
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))  # a re-exported graph
    _, cached = cached_row(model, cand, tmp_path / "c", streams=2, rounds=3, manifest=None)
    assert not cached
    _, cached = cached_row(model, cand, tmp_path / "c", streams=1, rounds=3, manifest=None)
    assert not cached  # another batch is another measurement
    assert json.loads(cache_file(tmp_path / "c", cand).read_text())["key"]["streams"] == 1


@pytest.mark.slow
def test_a_graph_its_engine_cannot_load_is_one_line_naming_the_candidate(tmp_path):
    from edgevid.errors import ModelError
    from edgevid.plan.measure import cached_row

    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a graph")
    cand = Candidate(4, "fp32", "onnxruntime", 1)
    with pytest.raises(ModelError, match=r"^measuring prune4 fp32 onnxruntime x1: ") as e:
        cached_row(model, cand, tmp_path / "c", streams=1, rounds=2, manifest=None)
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)
    assert not (tmp_path / "c").exists()  # nothing cached for a failed measurement


# --- end to end -----------------------------------------------------------------------------
def _edgevid() -> list[str]:
    return [sys.executable, "-m", "edgevid"]


@needs_torch
@pytest.mark.slow
def test_plan_quick_resumes_after_ctrl_c_and_its_command_runs(tmp_path, synth_root, media_dir):
    import torch

    from edgevid.train.checkpoint import meta_for, save_checkpoint
    from edgevid.train.models import create_model

    torch.manual_seed(0)
    teacher = create_model("tiny-timesformer", labels=SYNTH_LABELS).eval()
    ckpt = save_checkpoint(teacher, meta_for(teacher), tmp_path / "teacher")
    clip = media_dir / "carphone_pristine.mp4"
    out = tmp_path / "PLAN"
    cmd = [*_edgevid(), "plan", "--quick", "--checkpoint", str(ckpt), "--data", str(synth_root),
           "--levels", "8", "--backend", "onnxruntime", "--max-drop", "100", "--source",
           str(clip), "--out", str(out), "--quiet"]  # fmt: skip

    # Ctrl-C once the first candidate is measured and cached
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=with_stop_signals)  # fmt: skip
    cache = out / "work" / "measurements"
    deadline = time.monotonic() + 600
    while not (cache.is_dir() and any(cache.glob("*.json"))) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    first = sorted(cache.glob("*.json"))
    if proc.returncode == 130:  # interrupted (not finished in the meantime)
        assert "run the same command again to resume" in err and "Traceback" not in err
        assert not (out / "plan.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in first}

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # reused, not remeasured
    plan = json.loads((out / "plan.json").read_text())
    names = {c["name"] for c in plan["candidates"]}
    assert {"unpruned fp32 onnxruntime x2", "prune8 int8-dynamic onnxruntime x2"} <= names
    assert plan["recommendation"] in names and plan["baseline_accuracy"] is not None
    assert plan["constraints"]["budget_ms"] == pytest.approx(8000 / 30)
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    printed = done.stdout.strip().splitlines()[-1]
    assert printed == plan["command"]
    argv = shlex.split(printed)
    assert argv[:2] == ["edgevid", "run"] and Path(argv[argv.index("--model") + 1]).is_file()

    # the exact command it printed runs the recommended model
    ran = subprocess.run([*_edgevid(), *argv[1:]], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    results = [json.loads(line) for line in ran.stdout.splitlines()]
    assert results and {"label", "score", "latency_ms"} <= set(results[0])

    # constraints nobody meets: one clear line, exit 3, the cached rows reused
    miss = subprocess.run([*cmd, "--budget-ms", "0.001"], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert miss.returncode == 3, miss.stderr[-2000:]
    last = miss.stderr.strip().splitlines()[-1]
    assert last.startswith("edgevid: error: no candidate meets p95 <= 0.0 ms")
    assert "nearest miss" in last and "Traceback" not in miss.stderr
    assert json.loads((out / "plan.json").read_text())["recommendation"] is None


@needs_torch
@pytest.mark.slow
def test_a_level_the_registry_lacks_is_one_line_before_any_work(tmp_path, tiny_checkpoint,
                                                                synth_root):  # fmt: skip
    out = tmp_path / "PLAN"
    r = subprocess.run([*_edgevid(), "plan", "--checkpoint", str(tiny_checkpoint), "--data",
                        str(synth_root), "--levels", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (  # tiny-prune8 has 4 layers: no level below
        "edgevid: error: --levels 3: the registry prunes tiny-prune8 by no layers, no other count"
    )
    assert not out.exists()


def test_a_work_folder_no_plan_made_is_refused_untouched(tmp_path):
    """A plan replaces what is in its work folder (a cut-short pruning run, the manifest),
    so a folder of that name that no plan made is refused before anything is written."""
    from edgevid.plan.build import WORK_MARK, claim_work

    work = tmp_path / "out" / "work"
    (work / "prune4" / "run").mkdir(parents=True)
    (work / "manifest.json").write_text("mine")
    with pytest.raises(DataError, match="a folder edgevid plan did not make"):
        claim_work(work)
    assert (work / "manifest.json").read_text() == "mine" and not (work / WORK_MARK).exists()
    fresh = claim_work(tmp_path / "plan" / "work")
    assert (fresh / WORK_MARK).is_file() and claim_work(fresh) == fresh  # a resume takes it
