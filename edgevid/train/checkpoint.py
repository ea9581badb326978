"""Checkpoints: a Hugging Face folder (config.json + model.safetensors) + ``edgevid.json``.

    run/best/
      config.json          HF config (num_hidden_layers reflects pruning)
      model.safetensors    weights
      edgevid.json         ModelMeta: labels, frames, size, mean/std, sampling, variant
    run/last/training_state.json         optimizer/scheduler/RNG/position as JSON, where
    run/last/training_state.safetensors  every tensor is a reference into this file (resume)

The resume state is JSON + safetensors, never a pickle: run folders are shared and
downloaded, and loading one must not be able to run code. A folder with the old pickled
``training_state.pt`` is refused with one line.

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
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from transformers.utils import logging as hf_logging

from edgevid._atomic import atomic_dir, write_json
from edgevid.core.meta import META_FILENAME, ModelMeta, Sampling
from edgevid.core.schema import load_json
from edgevid.errors import MetadataError, ModelError
from edgevid.train.models.registry import model_spec

STATE_FILENAME = "training_state.json"  # resume state in last/: JSON, tensors referenced
STATE_TENSORS = "training_state.safetensors"  # the tensors STATE_FILENAME refers to
WEIGHTS = "model.safetensors"  # the only weights file a checkpoint is loaded from
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")  # refused, never loaded
OLD_STATE_FILENAME = "training_state.pt"  # the pickled format before 0.x: refused, never loaded
STATE_FORMAT = 2  # bumped when the layout of the JSON changes


def meta_for(model: nn.Module, sampling: Sampling | None = None, **extra) -> ModelMeta:
    """The metadata that describes ``model`` (labels, geometry, layers) for every artefact."""
    cfg = model.config
    return ModelMeta(
        labels=[cfg.id2label[i] for i in range(cfg.num_labels)],
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
            save_training_state(training_state, tmp)
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


# --- resume state: JSON + safetensors -----------------------------------------------------
# JSON has no tuples, no int keys and no tensors; each is written as a one-key object:
#   {"__tensor__": "t12"} -> tensor t12 of the safetensors file
#   {"__tuple__": [...]}  -> a tuple (RNG states are tuples)
#   {"__items__": [[k, v], ...]} -> a dict whose keys are not all strings (optimizer state)
def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"training state holds a {type(obj).__name__}, which has no safe encoding")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"}:
        if obj["__tensor__"] not in tensors:
            raise ValueError(f"tensor {obj['__tensor__']!r} is missing")
        return tensors[obj["__tensor__"]]
    if set(obj) == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict, torch.Tensor)):
        raise ValueError(f"a dict key is a {type(key).__name__}")
    return key


def save_training_state(state: dict[str, Any], folder: str | os.PathLike) -> None:
    """Write ``state`` as ``training_state.json`` + ``training_state.safetensors`` in ``folder``.

    Loads back exactly (tensors bit for bit, floats by their shortest repr) and without
    unpickling anything.
    """
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    body = {"format": STATE_FORMAT, "state": _encode(state, tensors)}
    save_safetensors(tensors, str(folder / STATE_TENSORS))
    write_json(folder / STATE_FILENAME, body)


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The optimizer / scheduler / RNG / position record saved in a ``last/`` checkpoint."""
    path = Path(path)
    file, tensor_file = path / STATE_FILENAME, path / STATE_TENSORS
    if not file.is_file() and (path / OLD_STATE_FILENAME).is_file():
        raise ModelError(
            f"{path / OLD_STATE_FILENAME}: resume state in the old pickle format, which edgevid "
            "no longer loads (a pickle can run code); start the run again or resume it with "
            "the edgevid that wrote it"
        )
    if not file.is_file():
        raise ModelError(f"{path}: no {STATE_FILENAME} to resume from (not a last/ checkpoint)")
    body = load_json(file, "resume state", ModelError, finite=False)
    if not isinstance(body, dict) or body.get("format") != STATE_FORMAT:
        found = body.get("format") if isinstance(body, dict) else type(body).__name__
        raise ModelError(
            f"{file}: resume state format {found!r}, this edgevid reads format {STATE_FORMAT}"
        )
    try:
        tensors = load_safetensors(str(tensor_file)) if tensor_file.is_file() else {}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ModelError(f"{tensor_file}: resume state tensors are corrupt ({e})") from e
    try:
        state = _decode(body.get("state"), tensors)
    except ValueError as e:
        raise ModelError(f"{file}: resume state is corrupt ({e})") from e
    if not isinstance(state, dict):
        raise ModelError(f"{file}: resume state is corrupt (not an object)")
    return state


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[nn.Module, ModelMeta]:
    """Load a checkpoint folder written by :func:`save_checkpoint` (or by ``edgevid train``)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: checkpoint folder not found")
    try:
        meta = ModelMeta.load(path)
    except MetadataError as e:
        raise ModelError(f"{path}: not an edgevid checkpoint ({e})") from e
    if not (path / WEIGHTS).is_file() and any((path / p).exists() for p in PICKLED_WEIGHTS):
        raise ModelError(
            f"{path}: the weights are a pickle ({', '.join(PICKLED_WEIGHTS)}), which edgevid "
            f"never loads (a pickle can run code); edgevid reads {WEIGHTS} only"
        )
    if not isinstance(load_json(path / "config.json", "checkpoint config", ModelError), dict):
        raise ModelError(f"{path / 'config.json'}: checkpoint config is not a JSON object")
    cls = _model_class(model_spec(meta.variant).family)
    try:
        with _no_hf_progress_bars():
            model = cls.from_pretrained(path, use_safetensors=True)
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
