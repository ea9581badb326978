"""Checkpoints: a Hugging Face folder (config.json + model.safetensors) + ``edgevid.json``.

    run/best/
      config.json          HF config (num_hidden_layers reflects pruning)
      model.safetensors    weights
      edgevid.json         ModelMeta: labels, frames, size, mean/std, sampling, variant
    run/last/training_state.pt   optimizer, scheduler, RNG states, epoch/step (resume)

Written atomically as a whole folder, so a kill mid-save leaves the previous checkpoint.
``TimesformerForVideoClassification.from_pretrained(run/best)`` works without edgevid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from transformers.utils import logging as hf_logging

from edgevid._atomic import atomic_dir
from edgevid.errors import MetadataError, ModelError
from edgevid.meta import META_FILENAME, ModelMeta, Sampling
from edgevid.train.models.registry import model_spec

STATE_FILENAME = "training_state.pt"  # resume state beside last/ (optimizer, RNG, position)


def meta_for(model: nn.Module, sampling: Sampling | None = None, **extra) -> ModelMeta:
    """The metadata that describes ``model`` (labels, geometry, layers) for every artefact."""
    cfg = model.config
    labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
    return ModelMeta(
        labels=labels,
        variant=getattr(cfg, "edgevid_variant", "timesformer"),
        num_frames=cfg.num_frames,
        image_size=cfg.image_size,
        sampling=sampling or Sampling(num_frames=cfg.num_frames),
        num_layers=cfg.num_hidden_layers,
        kept_layers=getattr(cfg, "edgevid_kept_layers", None),
        **extra,
    )


def save_checkpoint(
    model: nn.Module,
    meta: ModelMeta,
    path: str | os.PathLike,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write the HF folder + metadata (+ the trainer's resume state) as one atomic swap."""
    with atomic_dir(path) as tmp, _no_hf_progress_bars():
        model.save_pretrained(tmp, safe_serialization=True)
        meta.save(tmp / META_FILENAME)
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILENAME)
    return Path(path)


@contextmanager
def _no_hf_progress_bars() -> Iterator[None]:
    """Silence transformers' per-file bars ("Writing model shards", "Loading weights")."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The optimizer / scheduler / RNG / position record saved beside a ``last/`` checkpoint."""
    file = Path(path) / STATE_FILENAME
    if not file.is_file():
        raise ModelError(f"{path}: no {STATE_FILENAME} to resume from (not a last/ checkpoint)")
    try:
        return torch.load(file, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise ModelError(f"{file}: resume state is corrupt ({type(e).__name__})") from e


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[nn.Module, ModelMeta]:
    """Load a checkpoint folder written by :func:`save_checkpoint` (or by ``edgevid train``)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: checkpoint folder not found")
    try:
        meta = ModelMeta.load(path)
    except MetadataError as e:
        raise ModelError(f"{path}: not an edgevid checkpoint ({e})") from e
    spec = model_spec(meta.variant)
    cls = _model_class(spec.family)
    try:
        with _no_hf_progress_bars():
            model = cls.from_pretrained(path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: checkpoint is corrupt or incomplete ({first})") from e
    model.config.edgevid_variant = meta.variant
    return model.to(device).eval(), meta


def _model_class(family: str):
    if family == "scratch":
        from edgevid.train.models.scratch import ScratchForVideoClassification

        return ScratchForVideoClassification
    from transformers import TimesformerForVideoClassification

    return TimesformerForVideoClassification
