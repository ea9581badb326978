"""``edgevid demo``: the whole pipeline, end to end, offline, on a CPU, in a few minutes.

    data ─► train (TimeSformer + scratch baseline) ─► prune (importance + distillation)
         ─► export (FP32 / FP16 / INT8 ONNX, verified) ─► evaluate every graph
         ─► run the runtime on a video ─► one results table
         ─► plan: which model to deploy on this CPU (edgevid plan --quick)

With no arguments it makes the synthetic motion dataset and trains the tiny
configurations; with ``weights`` (a local Kinetics-400 TimeSformer folder) and ``data``
(a folder-per-class dataset) the same stages run at full size.
Each stage is the same library call the corresponding ``edgevid`` command makes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevid._atomic import write_json, write_text
from edgevid.core.precision import get_precision
from edgevid.errors import DataError

Log = Callable[[str], None]
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"  # ../shared/media from a checkout


@dataclass
class DemoConfig:
    out: Path = Path("edgevid-demo")  # everything goes here (must be empty or new)
    data: Path | None = None  # folder-per-class dataset; None: synthetic motion clips
    weights: str | None = None  # Kinetics-400 TimeSformer (hub id or folder): full size
    clips_per_class: int = 80  # synthetic dataset size
    epochs: int | None = None  # training epochs [tiny: 30; full size: the recipe's 50]
    prune_epochs: int = 4  # recovery fine-tuning epochs after pruning
    prune_drop: int = 8  # layers removed by pruning: prune8 keeps 4 of 12
    media: Path | None = None  # real clips to run the runtime on [default: ../shared/media]
    seed: int = 0  # seeds data, training and the split
    # torch threads for training, fixed: float sums depend on the count, so a machine with
    # more cores would train other models. The reference machine's count, where
    # benchmarks/results/demo.json was measured.
    threads: int = 2
    plan: bool = True  # end with `edgevid plan --quick` for 30 fps, one inference per 8 frames
    progress: bool = True  # progress bars

    @property
    def full_size(self) -> bool:
        return self.weights is not None


@dataclass
class DemoResult:
    rows: list[dict[str, Any]] = field(default_factory=list)  # the results table
    artefacts: dict[str, str] = field(default_factory=dict)  # what was written where
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage


def run_demo(cfg: DemoConfig, log: Log = print) -> DemoResult:
    """Run every stage into ``cfg.out``; return the results table and the artefact paths."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: demo folder exists and is not empty; choose another --out")
    res = DemoResult()

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        log(f"\n== {name} ==")
        t = time.perf_counter()
        value = fn()
        res.seconds[name] = round(time.perf_counter() - t, 1)
        log(f"   ({res.seconds[name]:.1f} s)")
        return value

    data_root, manifest = stage("data", lambda: _data(cfg, out, log))
    runs = stage("train", lambda: _train(cfg, manifest, out / "runs", log))
    runs["pruned"] = stage("prune", lambda: _prune(cfg, manifest, runs["timesformer"], out, log))
    graphs = stage("export", lambda: _export(cfg, runs, data_root, out / "exports", log))
    res.rows = stage("evaluate", lambda: _evaluate(graphs, runs, manifest, log))
    res.artefacts = stage("runtime", lambda: _runtime(cfg, graphs, manifest, out, log))
    if cfg.plan:
        res.artefacts.update(stage("plan", lambda: _plan(cfg, runs, data_root, out, log)))
    res.artefacts.update({f"run:{k}": str(v) for k, v in runs.items()}, dataset=str(data_root),
                         results=str(out / "results.json"),
                         table=str(out / "results.md"))  # fmt: skip
    write_json(out / "results.json", {"rows": res.rows, "seconds": res.seconds,
                                      "artefacts": res.artefacts})  # fmt: skip
    write_text(out / "results.md", results_markdown(res.rows))
    return res


# --- stages ---------------------------------------------------------------------------------
def _data(cfg: DemoConfig, out: Path, log: Log):
    from edgevid.core.manifest import load_or_split
    from edgevid.train.synth import make_synthetic_dataset

    if cfg.data is None:
        root = out / "data"
        make_synthetic_dataset(root, classes=5, clips_per_class=cfg.clips_per_class, seed=cfg.seed)
        log(f"synthetic motion dataset: 5 classes x {cfg.clips_per_class} clips in {root}")
    else:
        root = Path(cfg.data)
    manifest = load_or_split(root, seed=cfg.seed)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in manifest.splits.items())
    log(f"split ({manifest.grouping} grouping): {sizes}")
    return root, manifest


def _train(cfg: DemoConfig, manifest, runs: Path, log: Log) -> dict[str, Path]:
    from edgevid.train.config import AugmentConfig, recipe
    from edgevid.train.trainer import train

    prefix = "" if cfg.full_size else "tiny-"
    plans = {  # name: (variant, pretrained)
        "timesformer": (f"{prefix}timesformer", cfg.full_size),
        "scratch": (f"{prefix}scratch", False),
    }
    done = {}
    for name, (variant, pretrained) in plans.items():
        epochs = cfg.epochs or (None if cfg.full_size else 30)
        # Tiny models on synthetic clips: no augmentation (a random crop can cut the moving
        # shape out), so decoded clips stay in memory and an epoch costs half as much.
        augment = AugmentConfig(enabled=cfg.full_size or cfg.data is not None)
        tc = recipe(variant, pretrained, epochs=epochs, seed=cfg.seed, batch_size=8,
                    weights=cfg.weights if pretrained else "random", augment=augment,
                    threads=cfg.threads)  # fmt: skip
        result = train(tc, manifest, runs / name, progress=cfg.progress)
        test = f"{result.test.top1:.3f}" if result.test else "-"
        log(f"{variant}: best val acc {result.best_val_acc:.3f} (epoch {result.best_epoch}), "
            f"test acc {test}")  # fmt: skip
        done[name] = runs / name / "best"
    return done


def _prune(cfg: DemoConfig, manifest, teacher_dir: Path, out: Path, log: Log) -> Path:
    from edgevid.train.checkpoint import load_checkpoint
    from edgevid.train.config import TrainConfig
    from edgevid.train.prune import prune

    teacher, meta = load_checkpoint(teacher_dir)
    recover = TrainConfig(epochs=cfg.prune_epochs, lr=1e-3 if not cfg.full_size else 1e-4,
                          unfreeze=-1, seed=cfg.seed, threads=cfg.threads)  # fmt: skip
    keep = teacher.config.num_hidden_layers - cfg.prune_drop
    r = prune(teacher, meta, manifest, out / "runs" / f"prune{cfg.prune_drop}", keep=keep,
              strategy="importance", recover=recover, progress=cfg.progress)  # fmt: skip
    log(f"kept layers {r.kept_layers} of {teacher.config.num_hidden_layers}; "
        f"test acc after distillation {_fmt(r.test_acc)}")  # fmt: skip
    return r.out / "best"


def _export(cfg: DemoConfig, runs: dict[str, Path], data_root: Path, out: Path, log: Log):
    from edgevid.export.pipeline import ExportConfig, export_model

    graphs: dict[str, list[Path]] = {}
    for name, ckpt in runs.items():
        ec = ExportConfig(checkpoint=str(ckpt), out=str(out / name), precisions=DEMO_PRECISIONS,
                          calib_data=str(data_root), calib_clips=20, data=str(data_root),
                          verify_clips=20)  # fmt: skip
        graphs[name] = export_model(ec, log=log).graphs
    return graphs


def _evaluate(graphs: dict[str, list[Path]], runs: dict[str, Path], manifest, log: Log):
    from functools import partial

    from edgevid.core.clips import clip_batches, graph_input
    from edgevid.train.checkpoint import load_checkpoint
    from edgevid.train.evaluate import evaluate, load_predictor
    from edgevid.train.prune import median_ms

    paths, targets = manifest.paths("test"), manifest.labels("test")
    rows = []
    for name, files in graphs.items():
        model, _ = load_checkpoint(runs[name])
        row: dict[str, Any] = {"model": name, "params": sum(p.numel() for p in model.parameters())}
        for path in files:
            predict, meta = load_predictor(path)
            report = evaluate(predict, clip_batches(paths, targets, meta, 8, []), meta.labels)
            s = meta.image_size
            x = graph_input(np.zeros((1, meta.num_frames, s, s, 3), np.uint8), meta)
            p = get_precision(meta.precision).column  # fp32 | fp16 | int8
            row.update({"variant": meta.variant, "layers": meta.num_layers})
            row[f"size_mb_{p}"] = round(path.stat().st_size / 2**20, 3)
            row[f"acc_{p}"] = round(report.top1, 4)
            row[f"ms_{p}"] = round(median_ms(partial(predict, x), warmup=1), 2)
            row[f"file_{p}"] = str(path)
        rows.append(row)
    log(results_markdown(rows))
    return rows


def _runtime(cfg: DemoConfig, graphs: dict[str, list[Path]], manifest, out: Path, log: Log):
    from edgevid.core.video import probe_video, read_video, write_video

    model = graphs["pruned"][-1]  # the INT8 graph: precisions come in table order
    # A video of one test clip of every class in turn: the label should follow the motion.
    clips, seen = [], set()
    for path, label in zip(manifest.paths("test"), manifest.labels("test"), strict=True):
        if label not in seen:
            seen.add(label)
            clips.append(read_video(path)[0])
    fps = probe_video(manifest.paths("test")[0]).fps
    sources = [write_video(out / "demo_input.mp4", np.concatenate(clips), fps)]
    media = cfg.media if cfg.media is not None else MEDIA
    if media.is_dir():
        sources += sorted(media.glob("*.mp4"))[:1]
    written = {}
    for src in sources:
        name = Path(src).stem
        summary = _run_stream(src, model, out / "runtime" / f"{name}.mp4",
                              out / "runtime" / f"{name}.jsonl")  # fmt: skip
        p50 = summary["stages_ms"].get("inference", {}).get("p50", float("nan"))
        log(f"runtime on {src}: {summary['frames_read']} frames, {summary['inferences']} "
            f"inferences, {summary['fps']:.0f} fps, inference p50 {p50:.1f} ms")  # fmt: skip
        written[f"annotated:{name}"] = str(out / "runtime" / f"{name}.mp4")
    return written


def _run_stream(source: Path, model: Path, video_out: Path, json_out: Path) -> dict:
    from edgevid.runtime.run import run_streams
    from edgevid.runtime.streamer import StreamConfig, Streamer

    streamer = Streamer([str(source)], str(model), StreamConfig(every=4))
    return run_streams(streamer, output=video_out, json_path=json_out).stats.summary()


def _plan(cfg: DemoConfig, runs: dict[str, Path], data_root: Path, out: Path, log: Log):
    import shlex

    from edgevid.plan.run import PlanConfig, plan
    from edgevid.plan.search import Constraints, budget_ms

    constraints = Constraints(budget_ms(None, fps=30.0, every=8))
    pc = PlanConfig.quick(checkpoint=runs["timesformer"], data=data_root, out=out / "plan",
                          constraints=constraints, sources=(str(out / "demo_input.mp4"),),
                          progress=cfg.progress)  # fmt: skip
    result = plan(pc, log=log)
    log(result.files["table"].read_text(encoding="utf-8"))
    log(result.selection.message)
    written = {f"plan:{k}": str(v) for k, v in result.files.items()}
    if result.command:
        log(f"run it: {shlex.join(result.command)}")
        written["plan:command"] = shlex.join(result.command)
    return written


# --- helpers --------------------------------------------------------------------------------
def _fmt(v: float | None, spec: str = "{:.3f}") -> str:
    return "-" if v is None else spec.format(v)


DEMO_PRECISIONS = ("fp16", "int8-static")  # graphs beyond FP32, in the table's order
PRECISIONS = tuple(get_precision(p).column for p in ("fp32", *DEMO_PRECISIONS))  # table columns


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """The seed-style table: one row per model, accuracy and latency per precision."""
    cols = ["model", "variant", "layers", "params (M)", "MB (fp32)"]
    cols += [f"acc {p}" for p in PRECISIONS] + [f"ms/clip {p}" for p in PRECISIONS]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        cells = [r["model"], r["variant"], str(r["layers"]), f"{r['params'] / 1e6:.3f}",
                 f"{r.get('size_mb_fp32', float('nan')):.2f}"]  # fmt: skip
        cells += [_fmt(r.get(f"acc_{p}")) for p in PRECISIONS]
        cells += [_fmt(r.get(f"ms_{p}"), "{:.1f}") for p in PRECISIONS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
