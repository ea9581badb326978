"""`edgevid plan` for the full-size TimeSformer on this CPU: prune2..prune8 x precision x backend.

Two halves, said plainly in the output and in docs/plan.md:

* accuracy from TINY TRAINED models: a tiny 12-layer TimeSformer trained on the synthetic
  motion dataset, then `edgevid plan` itself (importance pruning + distillation to every
  level, export, every candidate measured through the runtime, eval split top-1);
* latency, peak RSS and file size from the FULL-SIZE variants with RANDOM WEIGHTS (speed
  does not depend on the weights; training them is out of reach on this machine), each
  measured by the plan's own child-process measurement (edgevid.plan.measure).

A full-size row takes the accuracy of the tiny row with the same prune level, precision and
backend; the selection is the plan's (edgevid.plan.search, pure). Every candidate is measured
(not only those the search would measure) so that the figure shows the whole trade-off; the
JSON lists what the search would have skipped. Measurements are cached in --work: run it
again to resume.

    python benchmarks/bench_plan.py                      # ~40 min on 2 cores
    python benchmarks/bench_plan.py --teacher demo/runs/timesformer/best --data demo/data
    python benchmarks/bench_plan.py --fps 30 --every 8 --max-drop 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from edgevid._atomic import write_json
from edgevid.plan import search
from edgevid.plan.run import PlanConfig, finish, machine_info, plan
from edgevid.plan.search import Constraints
from edgevid.plan.space import DEFAULT_PRECISIONS, available_backends, candidates

# torch's OpenMP threads spin by default, and on a shared 2-core machine the spinning takes
# the cores from the work (edgevid/cli/__init__.py sets the same for every command)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
RESULTS = Path(__file__).parent / "results" / "bench_plan.json"
FIGURE = Path(__file__).parents[1] / "docs" / "img" / "plan_pareto.png"
LEVELS = (2, 4, 6, 8)
PRECISIONS = DEFAULT_PRECISIONS  # fp32, int8-dynamic and the calibrated int8-cpu


def tiny_teacher(work: Path, epochs: int) -> tuple[Path, Path]:
    """The demo's synthetic dataset and a tiny 12-layer TimeSformer trained on it as the demo
    trains it (batch 8, no augmentation), reused when present."""
    from edgevid.core.manifest import load_or_split
    from edgevid.demo import DemoConfig
    from edgevid.train.config import AugmentConfig, TrainConfig
    from edgevid.train.synth import make_synthetic_dataset
    from edgevid.train.trainer import train

    data, run = work / "data", work / "teacher"
    if not (data / "manifest.json").is_file():
        make_synthetic_dataset(data, classes=5, clips_per_class=DemoConfig.clips_per_class,
                               seed=0)  # fmt: skip
        load_or_split(data).save(data / "manifest.json")
    if not (run / "best").is_dir():
        cfg = TrainConfig(variant="tiny-timesformer", weights="random", epochs=epochs, lr=1e-3,
                          batch_size=8, unfreeze=-1, label_smoothing=0.0,
                          augment=AugmentConfig(enabled=False), seed=0)  # fmt: skip
        train(cfg, load_or_split(data), run, progress=False)
    return data, run / "best"


def full_graphs(full: Path, data: Path, calib_clips: int) -> dict[int, dict[str, Path]]:
    """prune<D>/prune<D>[-<precision>].onnx, random weights (exported here when missing).

    The calibrated graphs take their activation ranges from ``calib_clips`` clips of the
    tiny model's dataset, resized to 224x224: with random weights the ranges decide nothing
    but the speed, which does not depend on them."""
    from edgevid.core.precision import PRECISIONS as TABLE
    from edgevid.export.pipeline import ExportConfig, export_model

    graphs = {}
    for d in LEVELS:
        folder = full / f"prune{d}"
        want = {p: folder / f"prune{d}{TABLE[p].suffix}.onnx" for p in PRECISIONS}
        if not all(p.is_file() for p in want.values()):
            extra = tuple(p for p in PRECISIONS if p != "fp32")
            export_model(ExportConfig(variant=f"prune{d}", random_init=True, verify=False,
                                      precisions=extra, calib_data=str(data),
                                      calib_clips=calib_clips, out=str(folder)))  # fmt: skip
        graphs[d] = want
    return graphs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgevid-bench-plan"))
    ap.add_argument("--full", type=Path, help="folder of the full-size graphs [WORK/full]")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5, help="timed full-size inferences")
    ap.add_argument(
        "--teacher",
        type=Path,
        help="a trained tiny-timesformer RUN/best "
        "(e.g. edgevid demo's runs/timesformer/best) [default: train one]",
    )
    ap.add_argument("--data", type=Path, help="its dataset (the demo's data/)")
    ap.add_argument("--teacher-epochs", type=int, default=30, help="as the demo trains it")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--calib-clips", type=int, default=8, help="INT8 calibration clips")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # the tiny models gain nothing from a second thread
    c = Constraints(search.budget_ms(None, args.fps, args.every), args.max_drop)
    load_before = machine_info()["load_avg"]
    t0 = time.perf_counter()

    # 1. accuracy: the plan itself, on tiny trained models
    if args.teacher is not None and args.data is not None:
        data, teacher = args.data, args.teacher
    else:
        data, teacher = tiny_teacher(args.work, args.teacher_epochs)
    tiny = plan(PlanConfig(checkpoint=teacher, data=data, constraints=c, out=args.work / "tiny",
                           precisions=PRECISIONS, levels=LEVELS, threads=(args.threads,),
                           recover_epochs=2, lr=1e-3, rounds=10, calib_clips=args.calib_clips,
                           progress=False))  # fmt: skip
    accuracy = {r.candidate: r.accuracy for r in tiny.rows}

    # 2. latency, RSS, size: the full-size graphs, random weights, every candidate
    from edgevid.plan.measure import cached_row

    graphs = full_graphs(args.full or args.work / "full", data, args.calib_clips)
    space = candidates(LEVELS, PRECISIONS, available_backends(), (args.threads,))
    rows = []
    for k in search.search_order(space):
        r, cached = cached_row(graphs[k.drop][k.precision], k, args.work / "full-cache",
                               streams=1, rounds=args.rounds, manifest=None)  # fmt: skip
        rows.append(dataclasses.replace(r, accuracy=accuracy.get(k)))
        note = "  (cached)" if cached else ""
        print(f"{k.name:<40} p50 {r.p50_ms:8.1f} ms  p95 {r.p95_ms:8.1f} ms  "
              f"RSS {r.rss_mb:6.0f} MB  acc {accuracy.get(k)}{note}")  # fmt: skip
    load_full = machine_info()["load_avg"]
    from bench_cpu import matmul_rates  # this CPU's ceiling, to read the latencies against

    rates = {k: round(v, 1) for k, v in matmul_rates(args.threads).items()}
    would_skip = {}  # what `edgevid plan` would not have measured, in its search order
    measured = []
    for r in rows:
        why = search.skip_reason(r.candidate, measured, c)
        if why:
            would_skip[r.name] = why
        else:
            measured.append(r)

    # 3. the plan's selection and files
    cfg = PlanConfig(checkpoint=teacher, data=data, constraints=c, out=args.work / "full-plan",
                     sources=("rtsp://camera/stream",), every=args.every)  # fmt: skip
    result = finish(cfg, rows, {}, tiny.baseline)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    FIGURE.write_bytes(result.files["plot"].read_bytes())
    table = result.files["table"].read_text()
    print(table)
    print(result.selection.message)
    report = json.loads(result.files["report"].read_text())
    write_json(RESULTS, {
        "what": "edgevid plan, full-size TimeSformer prune2..prune8 on this CPU: latency/RSS/"
                "size from random-weight full-size graphs, accuracy from tiny trained models "
                "(synthetic motion dataset) pruned + distilled by the plan itself",
        "constraints": dataclasses.asdict(c),
        "rounds": args.rounds,
        "threads": args.threads,
        "selection": {"message": result.selection.message,
                      "recommendation": report["recommendation"],
                      "nearest_miss": report["nearest_miss"], "command": report["command"]},
        "teacher": str(teacher),
        "data": str(data),
        "baseline_accuracy_tiny": tiny.baseline,
        "full_size": report["candidates"],
        "pareto_front": report["pareto_front"],
        "search_would_skip": would_skip,
        "tiny": json.loads(tiny.files["report"].read_text())["candidates"],
        "tiny_selection": tiny.selection.message,
        "table_md": table,
        "machine": {**machine_info(), "load_avg_before": load_before,
                    "load_avg_after_full_size": load_full,
                    "matmul_gmacs_per_s": rates,
                    "note": "1/5/15-minute load averages: ~0 is a quiet machine, 2 is both "
                            "cores busy with other work"},
        "wall_s": round(time.perf_counter() - t0, 1),
    })  # fmt: skip
    print(f"wrote {RESULTS} and {FIGURE}")


if __name__ == "__main__":
    main()
