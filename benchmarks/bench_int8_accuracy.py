"""INT8 accuracy on trained models: every INT8 graph against its FP32 graph, on every clip.

The issue-16 target is "<= 1 point top-1 drop vs FP32 on the synthetic test split with a
trained model". The demo's test split has 40 clips, where one clip is 2.5 points, so this
script also scores every clip of the dataset (train, val and test: 400 for the demo's
data); a quantization drop is a property of the graph, not of unseen data. For each trained
checkpoint it exports FP32 and every INT8 row of the precision table (calibrated ones on
the run's train split), runs each graph with ONNX Runtime and, for the CPU graph, OpenVINO
at f32 as ``--device auto`` picks it on this CPU, and reports top-1 on all clips and on the
test split, top-1 agreement with the FP32 graph and the drop in points.

    edgevid demo --out /tmp/demo          # trains tiny-timesformer, tiny-prune8, tiny-scratch
    python benchmarks/bench_int8_accuracy.py --runs /tmp/demo/runs --data /tmp/demo/data

Writes benchmarks/results/bench_int8_accuracy.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")
ENGINES = {  # name -> load_backend options
    "onnxruntime": {"device": "cpu"},
    "openvino-f32": {"device": "openvino", "precision": "fp32"},
}


def export(checkpoint: Path, data: Path, out: Path) -> list[Path]:
    """FP32 + every INT8 graph of ``checkpoint``, verified by the export itself."""
    from edgevid.core.precision import EXPORTED
    from edgevid.export.pipeline import ExportConfig, check_config, export_model

    cfg = ExportConfig(checkpoint=str(checkpoint), out=str(out), calib_data=str(data),
                       precisions=tuple(p for p in EXPORTED if p.startswith("int8")),
                       data=str(data), verify_clips=40)  # fmt: skip
    check_config(cfg)
    return export_model(cfg, log=lambda line: None).graphs


def predictions(graph: Path, engine: str, data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split: (top-1 class, label) of every clip through ``graph`` on ``engine``."""
    from edgevid.core.clips import dataset_clips, graph_input
    from edgevid.core.onnx_file import read_metadata
    from edgevid.runtime.backends import load_backend

    meta = read_metadata(graph)
    backend = load_backend(graph, **ENGINES[engine])
    out = {}
    for split in SPLITS:
        clips = dataset_clips(data, meta, 10**6, split=split)
        x = graph_input(clips.frames, meta)  # (N, T, 3, S, S) or (N, T, S, S, 3)
        logits = np.concatenate([backend.run(x[i : i + 8]) for i in range(0, len(x), 8)])
        out[split] = (logits.argmax(1), np.asarray(clips.labels))
    return out


def score(pred: dict, ref: dict) -> dict[str, float]:
    every = np.concatenate([pred[s][0] for s in SPLITS])
    labels = np.concatenate([pred[s][1] for s in SPLITS])
    fp32 = np.concatenate([ref[s][0] for s in SPLITS])
    test, test_labels = pred["test"]
    return {
        "clips": int(len(labels)),
        "top1_all": float((every == labels).mean()),
        "top1_test": float((test == test_labels).mean()),
        "test_clips": int(len(test_labels)),
        "agreement_with_fp32": float((every == fp32).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", required=True, help="folder of runs (<name>/best): edgevid demo's")
    ap.add_argument("--data", required=True, help="the dataset the runs were trained on")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_int8_accuracy.json"))
    a = ap.parse_args()
    from edgevid._atomic import write_json

    runs, data = Path(a.runs), Path(a.data)
    rows = []
    print(f"{'graph':<36}{'engine':<14}{'top-1 all':>10}{'drop':>7}{'test':>7}{'agree':>8}")
    with tempfile.TemporaryDirectory(prefix="edgevid-acc-") as tmp:
        for best in sorted(runs.glob("*/best")):
            graphs = export(best, data, Path(tmp) / best.parent.name)
            ref = predictions(graphs[0], "onnxruntime", data)
            base = score(ref, ref)["top1_all"]
            for graph in graphs:
                for engine in ENGINES if "int8-cpu" in graph.name else ("onnxruntime",):
                    pred = ref if graph == graphs[0] else predictions(graph, engine, data)
                    row = {"graph": graph.name, "engine": engine, **score(pred, ref)}
                    row["drop_points"] = 100 * (base - row["top1_all"])
                    rows.append(row)
                    print(f"{row['graph']:<36}{engine:<14}{row['top1_all']:>10.2%}"
                          f"{row['drop_points']:>7.2f}{row['top1_test']:>7.1%}"
                          f"{row['agreement_with_fp32']:>8.2%}", flush=True)  # fmt: skip
    write_json(Path(a.out), {"data": str(data), "load_average": os.getloadavg(), "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
