"""Layer pruning of a trained TimeSformer, with recovery by knowledge distillation.

    choose layers (strategy) -> keep_layers -> [recovery: KD from the unpruned teacher]
    -> OUT/best (HF folder, num_hidden_layers updated, edgevid.json lists kept layers)

Strategies (a registry; each returns the indices of the layers to keep):
  last        keep the first K layers, drop the final ones (what the seed study did)
  importance  greedy: repeatedly remove the layer whose removal changes the validation
              loss least, until K remain (a removal that lowers the loss counts as the
              smallest change: it is the one to take, not to avoid)

``prune_sweep`` runs every depth and writes the trade-off table (markdown + JSON) and plot.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgevid._atomic import write_json, write_text
from edgevid.core.clips import clip_batches
from edgevid.core.manifest import Manifest
from edgevid.core.meta import ModelMeta
from edgevid.errors import DataError, ModelError
from edgevid.progress import bar as progress_bar
from edgevid.train.checkpoint import load_checkpoint, meta_for, save_checkpoint
from edgevid.train.config import TrainConfig
from edgevid.train.models import list_models, model_spec
from edgevid.train.models.profile import profile_model
from edgevid.train.models.timesformer import encoder_layers, keep_layers
from edgevid.train.plots import plot_tradeoff
from edgevid.train.trainer import Trainer, evaluate_model

Strategy = Callable[..., list[int]]
STRATEGIES: dict[str, Strategy] = {}


def variant_depth(variant: str) -> int:
    """Encoder layers of a TimeSformer registry variant (``prune4``: 8), from the registry."""
    spec = model_spec(variant)  # an unknown name fails with the list of variants
    if spec.family != "timesformer":
        raise DataError(f"--variant must be a TimeSformer variant (prune4 ...), got {variant!r}")
    return spec.num_layers


def recovery_config(variant: str, epochs: int, *, augment: bool = True, **train: Any):
    """The fine-tuning that recovers a pruned model (distillation from the unpruned one), or
    None for ``epochs`` 0. ``train``: lr, batch_size, kd_alpha, kd_temperature."""
    from edgevid.train.config import AugmentConfig

    if epochs <= 0:
        return None
    return TrainConfig(variant=variant, epochs=epochs, unfreeze=-1, warmup_epochs=0.0,
                       augment=AugmentConfig(enabled=augment), **train)  # fmt: skip


def register_strategy(name: str) -> Callable[[Strategy], Strategy]:
    def deco(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        return fn

    return deco


@register_strategy("last")
def last_layers(model: nn.Module, keep: int, **_: Any) -> list[int]:
    """The first ``keep`` layers."""
    return list(range(keep))


@contextlib.contextmanager
def only_layers(model: nn.Module, indices: Sequence[int]) -> Iterator[None]:
    """Temporarily run ``model`` with just the encoder layers ``indices``."""
    encoder = model.timesformer.encoder
    full = encoder.layer
    encoder.layer = nn.ModuleList(full[i] for i in indices)
    try:
        yield
    finally:
        encoder.layer = full


@torch.no_grad()
def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 16) -> float:
    total = 0.0
    for i in range(0, len(y), batch_size):
        logits = model(pixel_values=x[i : i + batch_size]).logits
        total += F.cross_entropy(logits, y[i : i + batch_size], reduction="sum").item()
    return total / len(y)


@register_strategy("importance")
def importance_layers(
    model: nn.Module,
    keep: int,
    *,
    val: tuple[torch.Tensor, torch.Tensor],
    trace: list[dict[str, Any]] | None = None,
    progress: bool = True,
    **_: Any,
) -> list[int]:
    """Greedy backward elimination on validation loss: (L - keep) rounds of L' trials."""
    x, y = val  # (N, T, 3, H, W), (N,)
    model.eval()
    current = list(range(len(encoder_layers(model))))
    rounds = len(current) - keep
    bar = progress_bar(total=sum(len(current) - r for r in range(rounds)),
                       desc="layer importance", disable=not progress, leave=False)  # fmt: skip
    while len(current) > keep:
        with only_layers(model, current):
            base = _loss(model, x, y)
        losses = {}
        for i in current:
            with only_layers(model, [j for j in current if j != i]):
                losses[i] = _loss(model, x, y)
            bar.update(1)
        drop = min(losses, key=losses.get)  # raises the loss least (or lowers it most)
        current.remove(drop)
        if trace is not None:
            trace.append(
                {"removed": drop, "val_loss": losses[drop], "base_loss": base, "candidates": losses}
            )
    bar.close()
    return current


def pruned_copy(model: nn.Module, indices: Sequence[int]) -> nn.Module:
    """A deep copy of ``model`` with only the encoder layers ``indices`` (config updated)."""
    if not hasattr(model, "timesformer"):
        raise ModelError("layer pruning applies to TimeSformer variants only")
    student = copy.deepcopy(model)
    keep_layers(student, indices)
    parent = getattr(model.config, "edgevid_variant", "timesformer")
    prefix = "tiny-" if parent.startswith("tiny-") else ""
    dropped = 12 - student.config.num_hidden_layers
    name = f"{prefix}prune{dropped}" if dropped else f"{prefix}timesformer"
    student.config.edgevid_variant = name if name in list_models() else parent
    return student


def val_tensors(manifest: Manifest, meta: ModelMeta) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation split decoded once, as the runtime would feed it."""
    batches = list(clip_batches(manifest.paths("val"), manifest.labels("val"), meta, 32))
    if not batches:
        raise DataError(f"{manifest.root}: importance pruning needs a non-empty val split")
    return (torch.from_numpy(np.concatenate([b[0] for b in batches])),
            torch.from_numpy(np.concatenate([b[1] for b in batches])))  # fmt: skip


@dataclass
class PruneResult:
    out: Path  # run folder; the pruned model is out / "best"
    kept_layers: list[int]  # indices into the teacher's layers
    strategy: str
    val_acc: float | None  # after recovery
    test_acc: float | None
    pruned_test_acc: float | None  # straight after pruning, before recovery
    model: nn.Module  # the final pruned (and recovered) model, in memory
    trace: list[dict[str, Any]] = field(default_factory=list)  # importance rounds


def prune(
    teacher: nn.Module,
    meta: ModelMeta,
    manifest: Manifest,
    out: str | os.PathLike,
    *,
    keep: int,
    strategy: str = "importance",
    recover: TrainConfig | None = None,
    progress: bool = True,
) -> PruneResult:
    """Prune ``teacher`` to ``keep`` layers with ``strategy``; recover with KD if ``recover``."""
    if strategy not in STRATEGIES:
        raise ModelError(f"unknown pruning strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
    total = len(encoder_layers(teacher)) if hasattr(teacher, "timesformer") else 0
    if total < 2:
        raise ModelError(
            f"{meta.variant}: only TimeSformer variants with 2 or more encoder layers can be "
            "pruned (this model has no encoder layers to drop)"
        )
    if not 1 <= keep < total:
        raise ModelError(f"--keep must be between 1 and {total - 1} for a {total}-layer model")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: output folder exists and is not empty; choose another --out")
    teacher = teacher.eval()
    trace: list[dict[str, Any]] = []
    val = val_tensors(manifest, meta) if strategy == "importance" else None
    indices = STRATEGIES[strategy](teacher, keep, val=val, trace=trace, progress=progress)
    student = pruned_copy(teacher, indices)
    kept = list(student.config.edgevid_kept_layers)
    pmeta = meta_for(student, sampling=meta.sampling)
    pruned = {s: _split_acc(student, pmeta, manifest, s) for s in ("val", "test")}  # before KD
    if recover is not None and recover.epochs > 0:
        cfg = dataclasses.replace(recover, variant=student.config.edgevid_variant)
        trainer = Trainer(cfg, manifest, out, model=student, teacher=teacher, progress=progress)
        result = trainer.fit()
        student, _ = load_checkpoint(out / "best")  # exactly what the user gets
        val_acc, test_acc = result.best_val_acc, result.test.top1 if result.test else None
    else:
        save_checkpoint(student, pmeta, out / "best")
        manifest.save(out / "manifest.json")  # the split it was measured on, in its own folder
        val_acc, test_acc = pruned["val"], pruned["test"]
    record = {"strategy": strategy, "keep": keep, "kept_layers": kept,
              "teacher_layers": total, "val_acc": val_acc, "test_acc": test_acc,
              "pruned_val_acc": pruned["val"], "pruned_test_acc": pruned["test"],
              "importance_trace": trace,
              "recovery": recover.to_dict() if recover else None}  # fmt: skip
    write_json(out / "prune.json", record)
    return PruneResult(out, kept, strategy, val_acc, test_acc, pruned["test"], student, trace)


def _split_acc(model: nn.Module, meta: ModelMeta, manifest: Manifest, split: str) -> float | None:
    if not manifest.splits.get(split):
        return None
    return evaluate_model(model, meta, manifest, split).top1


def median_ms(fn: Callable[[], Any], runs: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def cpu_latency_ms(model: nn.Module, runs: int = 10) -> float:
    """Median wall time of one clip (batch 1) on the CPU, after two warm-up runs."""
    cfg = model.config
    model = model.to("cpu").eval()
    x = torch.randn(1, cfg.num_frames, 3, cfg.image_size, cfg.image_size)  # (B, T, C, H, W)
    with torch.inference_mode():
        return median_ms(lambda: model(pixel_values=x), runs)


def sweep_row(name: str, model: nn.Module, meta: ModelMeta, manifest: Manifest) -> dict[str, Any]:
    p = profile_model(model, getattr(model.config, "edgevid_variant", ""))
    return {
        "name": name,
        "layers": p.layers,
        "params": p.params,
        "size_mb": round(p.size_mb, 3),
        "gflops": round(p.gflops, 4),
        "val_acc": _split_acc(model, meta, manifest, "val"),
        "test_acc": _split_acc(model, meta, manifest, "test"),
        "latency_ms": round(cpu_latency_ms(model), 3),
    }


def prune_sweep(
    teacher: nn.Module,
    meta: ModelMeta,
    manifest: Manifest,
    out: str | os.PathLike,
    *,
    drops: Sequence[int] = (2, 4, 6, 8),
    strategy: str = "importance",
    recover: TrainConfig | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every depth: OUT/prune<D>/ per variant, OUT/sweep.{md,json}, OUT/tradeoff.png."""
    out = Path(out)
    total = len(encoder_layers(teacher))
    rows = [sweep_row(f"unpruned ({total}L)", teacher, meta, manifest)]
    for d in drops:
        r = prune(teacher, meta, manifest, out / f"prune{d}", keep=total - d, strategy=strategy,
                  recover=recover, progress=progress)  # fmt: skip
        rows.append(sweep_row(f"prune{d}", r.model, meta_for(r.model, meta.sampling), manifest))
        rows[-1]["kept_layers"] = r.kept_layers
    write_json(out / "sweep.json", rows)
    write_text(out / "sweep.md", sweep_markdown(rows))
    plot_tradeoff(rows, out / "tradeoff.png")
    return rows


SWEEP_COLUMNS = (  # (header, row key, format)
    ("variant", "name", "{}"),
    ("layers", "layers", "{}"),
    ("params (M)", "params", "{:.3f}"),
    ("size (MB)", "size_mb", "{:.2f}"),
    ("GFLOPs/clip", "gflops", "{:.3f}"),
    ("val acc", "val_acc", "{:.3f}"),
    ("test acc", "test_acc", "{:.3f}"),
    ("CPU ms/clip", "latency_ms", "{:.1f}"),
)


def sweep_markdown(rows: Sequence[dict[str, Any]]) -> str:
    def cell(r: dict[str, Any], key: str, fmt: str) -> str:
        v = r[key] / 1e6 if key == "params" else r[key]
        return "-" if v is None else fmt.format(v)

    lines = ["| " + " | ".join(h for h, _, _ in SWEEP_COLUMNS) + " |"]
    lines.append("|" + " --- |" * len(SWEEP_COLUMNS))
    for r in rows:
        lines.append("| " + " | ".join(cell(r, k, f) for _, k, f in SWEEP_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
