"""Fine-tuning and training from scratch, resumable at the exact step.

    RUN_DIR/
      config.json            TrainConfig of the run
      manifest.json          the dataset split it trained on
      history.json           one record per epoch (train/val loss and accuracy, lr, time)
      best/ last/            checkpoints (HF folder + edgevid.json); last/ + training_state.pt
      curves.png             loss and accuracy, train and val
      confusion_matrix.png   test split, best checkpoint (+ .json with per-class scores)

The loop is plain PyTorch driven by Hugging Face ``accelerate``: one process on a CPU or a
GPU, or data parallel under ``accelerate launch`` / ``torchrun`` without a code change.
Mixed precision (bf16, else fp16) and channels-last are used only on a CUDA GPU.

With a frozen prefix (``unfreeze=N``) and augmentation off, the prefix's output for each
clip never changes: it is computed once and the tail trains on cached features.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from edgevid import progress as display
from edgevid._atomic import write_json
from edgevid.core.clips import clip_batches
from edgevid.core.manifest import Manifest
from edgevid.core.meta import ModelMeta, Sampling
from edgevid.core.schema import read_json
from edgevid.errors import DataError, ModelError
from edgevid.train.build import build_model
from edgevid.train.checkpoint import load_checkpoint, load_training_state, meta_for, save_checkpoint
from edgevid.train.config import TrainConfig
from edgevid.train.dataset import Batch, ClipDataset, EpochSampler, collate, numpy_batches
from edgevid.train.evaluate import EvalReport, evaluate, report_from_logits, torch_predictor
from edgevid.train.plots import plot_confusion, plot_curves
from edgevid.train.staged import StagedModel


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int  # 1-based epoch of best/
    best_val_acc: float
    history: list[dict[str, Any]]
    test: EvalReport | None  # best/ on the test split (None if the split is empty)
    skipped: list[str] = field(default_factory=list)  # undecodable clips, reported by name
    partial: list[str] = field(default_factory=list)  # damaged clips trained on what decoded
    cache_seconds: float = 0.0  # time spent computing cached features
    is_main: bool = True  # False on the other processes of a data-parallel run


# --- small pure helpers -------------------------------------------------------------------
def sampling_from_manifest(manifest: Manifest, num_frames: int) -> Sampling:
    """The training data's temporal span, so the runtime can stream with the same one."""
    secs, fps = manifest.extra.get("mean_duration_s"), manifest.extra.get("median_fps")
    sampling = Sampling(num_frames=num_frames, mode="uniform", clip_seconds=secs, fps=fps)
    sampling.frame_stride = sampling.stream_stride(fps)  # the one stride formula (core.meta)
    return sampling


def warmup_cosine(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier at optimiser step s: linear 0 -> 1 over ``warmup``, cosine to min_ratio."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices, none on biases, norms and embeddings' 1-D."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fix_threads(threads: int) -> int:
    """Pin torch's CPU thread count (``0``: keep its default) and return it.

    Parallel float reductions split their work by thread, so the count decides the last
    bits of every result; pinned (and recorded in the run's config), a seeded run gives the
    same numbers however busy the machine is. Deterministic algorithms are chosen where
    torch has both kinds."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    n = threads or torch.get_num_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return n


def rng_state() -> dict[str, Any]:
    """Every RNG's state in plain types and tensors (saved as JSON + safetensors, no pickle)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_accelerator(mixed_precision: str = "auto"):
    """accelerate's Accelerator: DDP under ``accelerate launch``/``torchrun``, AMP on CUDA only."""
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    if mixed_precision == "auto":
        mixed_precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    return Accelerator(mixed_precision=mixed_precision if cuda else "no", cpu=not cuda)


def distillation_loss(
    logits: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T² KL(teacher || student) on temperature-softened logits (Hinton et al.)."""
    t = temperature
    log_p = F.log_softmax(logits / t, dim=-1)
    log_q = F.log_softmax(teacher / t, dim=-1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean") * t * t


class CachedFeatures(Dataset):
    """The frozen prefix's output per clip (and the teacher's logits), keyed like ClipDataset."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None):
        self.features, self.labels, self.teacher = features, labels, teacher  # (N, L, D), (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: int | tuple[int, int]):
        i = key[0] if isinstance(key, tuple) else key
        return self.features[i], int(self.labels[i]), i, None


# --- the trainer --------------------------------------------------------------------------
class Trainer:
    """One run: ``Trainer(cfg, manifest, run_dir).fit()``; ``Trainer.resume(run_dir).fit()``."""

    def __init__(
        self,
        cfg: TrainConfig,
        manifest: Manifest,
        run_dir: str | os.PathLike,
        *,
        model: nn.Module | None = None,
        teacher: nn.Module | None = None,
        progress: bool = True,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.cfg, self.manifest, self.run_dir = cfg, manifest, Path(run_dir)
        if len(manifest.classes) < 2:
            raise DataError(
                f"{manifest.root}: {len(manifest.classes)} class ({', '.join(manifest.classes)}); "
                "a classifier needs at least 2 classes (one folder per class)"
            )
        self.progress = progress
        self.acc = make_accelerator(cfg.mixed_precision)
        cfg.threads = fix_threads(cfg.threads)
        seed_everything(cfg.seed)
        if model is None:
            model = build_model(cfg.variant, manifest.classes, cfg.weights, cfg.zero_shot)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        if labels != manifest.classes:
            raise ModelError(f"model labels {labels} differ from the dataset's {manifest.classes}")
        sampling = sampling_from_manifest(manifest, model.config.num_frames)
        self.meta: ModelMeta = meta_for(model, sampling=sampling)
        device = self.acc.device
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.teacher = teacher.to(device).eval().requires_grad_(False) if teacher else None
        self.staged = StagedModel(model, cfg.unfreeze)
        self.use_cache = cfg.cache_features and self.staged.has_prefix

        def clips(split: str, train: bool) -> ClipDataset:
            return ClipDataset(
                manifest.paths(split),
                manifest.labels(split),
                self.meta,
                train=train,
                augment=cfg.augment,
                shuffle_frames=cfg.shuffle_frames,
                seed=cfg.seed,
                memo_mb=0 if self.use_cache else cfg.clip_memory_mb,  # features are cached
            )

        self.train_set, self.val_set = clips("train", True), clips("val", False)
        if len(self.train_set) == 0:
            raise DataError(f"{manifest.root}: the training split is empty")
        self.skipped: dict[str, str] = {}  # path -> why it could not be decoded
        self.partial: dict[str, str] = {}  # path -> how far the damaged clip decoded
        self.cache_seconds = 0.0
        self.staged.to(device)
        self.train_data = self._cached(self.train_set, "train") or self.train_set
        self.val_data = self._cached(self.val_set, "val")

        rank, world = self.acc.process_index, self.acc.num_processes
        self.sampler = EpochSampler(len(self.train_data), cfg.seed, True, rank, world)
        self.loader = DataLoader(
            self.train_data,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            collate_fn=collate,
            num_workers=cfg.num_workers,
        )
        self.steps_per_epoch = -(-self.sampler.shard_size // cfg.batch_size)
        total = cfg.epochs * self.steps_per_epoch
        warmup = min(total - 1, round(cfg.warmup_epochs * self.steps_per_epoch))
        optimizer = torch.optim.AdamW(param_groups(self.staged, cfg.weight_decay), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total, max(1, warmup), cfg.min_lr_ratio)
        )
        self.model, self.optimizer = self.acc.prepare(self.staged, optimizer)

        self.epoch, self.step, self.global_step = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self.best = {"val_acc": -1.0, "val_loss": float("inf"), "epoch": 0}
        self.running = {"loss": 0.0, "correct": 0, "count": 0, "time": 0.0}
        if state is not None:
            self._load_state(state)

    # --- construction helpers -------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | os.PathLike, progress: bool = True) -> Trainer:
        """Continue the run in ``run_dir`` from its ``last/`` checkpoint and state."""
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.json"
        if not cfg_path.is_file():
            raise DataError(f"{run_dir}: not a training run (no config.json) to resume")
        raw = read_json(TrainConfig, cfg_path, "run config", DataError, required=("variant",))
        cfg = TrainConfig.from_dict(raw)
        manifest = Manifest.load(run_dir / "manifest.json")
        state = load_training_state(run_dir / "last")
        model, _ = load_checkpoint(run_dir / "last")
        return cls(cfg, manifest, run_dir, model=model, progress=progress, state=state)

    def _cached(self, ds: ClipDataset, name: str) -> CachedFeatures | None:
        """The frozen prefix (and teacher) run once over ``ds``, when its inputs never change."""
        if not (self.use_cache and ds.deterministic and len(ds)):
            return None
        start = time.perf_counter()
        feats, labels, teacher = [], [], []
        bar = self._bar(self._loader(ds), desc=f"caching frozen features ({name})", leave=False)
        for batch in bar:
            self._note_clips(batch)
            if not len(batch.labels):
                continue
            x = batch.inputs.to(self.acc.device)
            with self.acc.autocast():
                feats.append(self.staged.prefix(x).cpu())
                if self.teacher is not None:
                    teacher.append(self.teacher(pixel_values=x).logits.float().cpu())
            labels.append(batch.labels)
        self.cache_seconds += time.perf_counter() - start
        if not feats:
            raise self._undecodable(name)
        return CachedFeatures(
            torch.cat(feats), torch.cat(labels), torch.cat(teacher) if teacher else None
        )

    def _undecodable(self, split: str) -> DataError:
        """The error of a split none of whose clips decoded: the first clip's reason."""
        first = next(iter(self.skipped.values()), "")
        why = f" (e.g. {first})" if first else ""
        n = len(self.manifest.splits.get(split, []))
        return DataError(
            f"{self.manifest.root}: none of the {n} clips of the {split} split could be "
            f"decoded{why}; no checkpoint is published"
        )

    def _loader(self, ds: ClipDataset) -> DataLoader:
        """``ds`` in order, batched like training (caching and validation)."""
        return DataLoader(
            ds, batch_size=self.cfg.batch_size, collate_fn=collate, num_workers=self.cfg.num_workers
        )

    def _bar(self, iterable=None, **kw):
        return display.bar(iterable, disable=not (self.progress and self.acc.is_main_process), **kw)

    def _note_clips(self, batch: Batch) -> None:
        """Say once per clip what could not be decoded, and what decoded only in part."""
        for s in batch.skipped:
            if s.path not in self.skipped:
                self.skipped[s.path] = s.reason
                display.write(f"edgevid: skipping undecodable clip {s.path} ({s.reason})")
        for note in batch.partial:
            if note.path not in self.partial:
                self.partial[note.path] = note.reason
                say = f"edgevid: warning: {note.reason}; training on the frames that decoded"
                display.write(say)

    # --- resume state ---------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,  # epochs completed before the current one
            "step": self.step,  # optimiser steps done inside the current epoch
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "history": self.history,
            "best": self.best,
            "running": self.running,
            "skipped": self.skipped,
            "partial": self.partial,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        try:
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.global_step = int(state["global_step"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.history, self.best = list(state["history"]), dict(state["best"])
            self.running, self.skipped = dict(state["running"]), dict(state["skipped"])
            self.partial = dict(state.get("partial", {}))  # absent in states from before it
            set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise ModelError(
                f"{self.run_dir / 'last'}: resume state does not fit this run ({what})"
            ) from e

    def _save(self, which: str) -> None:
        if not self.acc.is_main_process:
            return
        model = self.acc.unwrap_model(self.model).model
        if which == "best":
            meta = self.meta.replace(
                extra={"val_acc": self.best["val_acc"], "epoch": self.best["epoch"]}
            )
            save_checkpoint(model, meta, self.run_dir / "best")
        else:
            save_checkpoint(model, self.meta, self.run_dir / "last", training_state=self._state())
            write_json(self.run_dir / "history.json", self.history)

    # --- the loop -------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, batch: Batch, teacher: torch.Tensor | None):
        ce = F.cross_entropy(logits, batch.labels, label_smoothing=self.cfg.label_smoothing)
        if teacher is None:
            return ce
        kd = distillation_loss(logits, teacher, self.cfg.kd_temperature)
        return self.cfg.kd_alpha * kd + (1 - self.cfg.kd_alpha) * ce

    def _train_step(self, batch: Batch) -> None:
        device = self.acc.device
        batch.inputs, batch.labels = batch.inputs.to(device), batch.labels.to(device)
        teacher = None
        if isinstance(self.train_data, CachedFeatures):
            if self.train_data.teacher is not None:
                teacher = self.train_data.teacher[batch.indices].to(device)
            logits = self.model(hidden=batch.inputs)
        else:
            if self.teacher is not None:
                with torch.no_grad(), self.acc.autocast():
                    teacher = self.teacher(pixel_values=batch.inputs).logits.float()
            logits = self.model(pixel_values=batch.inputs)
        loss = self._loss(logits.float(), batch, teacher)
        self.acc.backward(loss)
        if self.cfg.grad_clip:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        n = len(batch.labels)
        self.running["loss"] += loss.item() * n
        self.running["correct"] += int((logits.argmax(1) == batch.labels).sum())
        self.running["count"] += n

    def _train_epoch(self, epoch: int) -> None:
        self.model.train()
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(self.step * self.cfg.batch_size)
        bar = self._bar(
            total=self.steps_per_epoch,
            initial=self.step,
            leave=False,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
        )
        start = time.perf_counter()
        for batch in self.loader:
            self._note_clips(batch)
            if len(batch.labels):
                self._train_step(batch)
            self.scheduler.step()
            self.step += 1
            self.global_step += 1
            r = self.running
            bar.update(1)
            bar.set_postfix(
                loss=f"{r['loss'] / max(1, r['count']):.3f}",
                acc=f"{r['correct'] / max(1, r['count']):.3f}",
            )
            if self.cfg.save_every and self.global_step % self.cfg.save_every == 0:
                self.running["time"] += time.perf_counter() - start
                start = time.perf_counter()
                self._save("last")
        bar.close()
        self.running["time"] += time.perf_counter() - start

    @torch.no_grad()
    def _validate(self) -> tuple[float, float] | None:
        staged = self.acc.unwrap_model(self.model).eval()
        if self.val_data is not None:
            with self.acc.autocast():  # cached features may be bf16/fp16 on a GPU
                out = [
                    staged.tail(f.to(self.acc.device)).float().cpu()
                    for f in self.val_data.features.split(64)
                ]
            ys = [self.val_data.labels]
        else:  # an empty split yields no batch
            out, ys = [], []
            for batch in self._loader(self.val_set):
                self._note_clips(batch)
                if len(batch.labels):
                    with self.acc.autocast():
                        out.append(staged(pixel_values=batch.inputs.to(self.acc.device)).float())
                    ys.append(batch.labels)
        if not out:
            if len(self.val_set):  # clips, none decodable: not the same as no val split
                raise self._undecodable("val")
            return None
        y = torch.cat(ys).numpy()
        report = report_from_logits(torch.cat(out).cpu().numpy(), y, self.manifest.classes)
        return report.loss, report.top1

    def fit(self) -> TrainResult:
        """Train to ``cfg.epochs``, validating and checkpointing; then test best/ and plot."""
        cfg = self.cfg
        if self.acc.is_main_process and self.epoch == 0 and self.step == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", cfg.to_dict())
            self.manifest.save(self.run_dir / "manifest.json")
        epochs = self._bar(
            range(self.epoch, cfg.epochs), desc="training", initial=self.epoch, total=cfg.epochs
        )
        for epoch in epochs:
            self._train_epoch(epoch)
            sums = [self.running[k] for k in ("loss", "correct", "count")]  # summed over processes
            r = self.acc.reduce(torch.tensor(sums, dtype=torch.float64, device=self.acc.device))
            if r[2] == 0:  # nothing trained: never a best/ (or last/) from an untrained model
                raise self._undecodable("train")
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": self.global_step,
                "train_loss": float(r[0] / max(1, r[2])),
                "train_acc": float(r[1] / max(1, r[2])),
                "lr": self.scheduler.get_last_lr()[0],
                "time_s": round(self.running["time"], 3),
                "processes": self.acc.num_processes,  # data-parallel world size
            }
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                val = self._validate()
                if val is not None:
                    record["val_loss"], record["val_acc"] = val
                    if (val[1], -val[0]) > (self.best["val_acc"], -self.best["val_loss"]):
                        self.best = {"val_acc": val[1], "val_loss": val[0], "epoch": epoch + 1}
                        self._save("best")
            self.history.append(record)
            epochs.set_postfix(val_acc=f"{record.get('val_acc', float('nan')):.3f}")
            self.epoch, self.step = epoch + 1, 0
            self.running = {"loss": 0.0, "correct": 0, "count": 0, "time": 0.0}
            self._save("last")
        if self.best["epoch"] == 0:  # no validation split: the last epoch is the best one
            self.best = {"val_acc": float("nan"), "val_loss": float("nan"), "epoch": self.epoch}
            self._save("best")
        self.acc.wait_for_everyone()
        test = self._finish() if self.acc.is_main_process else None
        return TrainResult(
            self.run_dir, self.best["epoch"], self.best["val_acc"], self.history, test,
            sorted(self.skipped), [self.partial[p] for p in sorted(self.partial)],
            self.cache_seconds, self.acc.is_main_process,
        )  # fmt: skip

    def _finish(self) -> EvalReport | None:
        """best/ on the test split (the runtime's preprocessing), curves and confusion plots."""
        plot_curves(self.history, self.run_dir / "curves.png")
        if not self.manifest.splits.get("test"):
            return None
        model, meta = load_checkpoint(self.run_dir / "best", device=str(self.acc.device))
        report = evaluate_model(
            model,
            meta,
            self.manifest,
            "test",
            self.cfg.batch_size,
            shuffle_frames=self.cfg.shuffle_frames,
            seed=self.cfg.seed,
        )
        report.save(self.run_dir / "confusion_matrix.json")
        plot_confusion(
            report.confusion,
            report.labels,
            self.run_dir / "confusion_matrix.png",
            title=f"test split, top-1 {report.top1:.3f}",
        )
        return report


def evaluate_model(
    model: nn.Module,
    meta: ModelMeta,
    manifest: Manifest,
    split: str,
    batch_size: int = 8,
    *,
    shuffle_frames: bool = False,
    seed: int = 0,
) -> EvalReport:
    """A torch model on a manifest split, fed exactly like the runtime feeds it."""
    device = str(next(model.parameters()).device)
    paths, targets = manifest.paths(split), manifest.labels(split)
    skipped: list[str] = []
    partial: list[str] = []
    if shuffle_frames:  # the control experiment: the dataset applies its frame shuffle
        ds = ClipDataset(paths, targets, meta, shuffle_frames=True, seed=seed)
        batches = numpy_batches(ds, batch_size, skipped, partial)
    else:
        batches = clip_batches(paths, targets, meta, batch_size, skipped, partial)
    return evaluate(torch_predictor(model, device), batches, meta.labels, skipped, partial)


def train(
    cfg: TrainConfig,
    manifest: Manifest,
    run_dir: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    teacher: nn.Module | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg.variant`` (or ``model``) on ``manifest`` into a fresh ``run_dir``."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DataError(
            f"{run_dir}: run folder exists and is not empty; "
            f"continue it with --resume {run_dir} or choose another --out"
        )
    return Trainer(cfg, manifest, run_dir, model=model, teacher=teacher, progress=progress).fit()
