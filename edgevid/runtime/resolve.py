"""What a model argument names -> the model file to open.

A model is any of: a model file (:mod:`edgevid.core.formats`: ``.onnx``, ``.xml``, ``.engine``,
``.plan``), an export folder (``edgevid export --out DIR``: its FP32 graph), a training
checkpoint folder (``RUN/best``, or the run folder itself), which is exported to ONNX on the
fly when torch is installed (the graph is cached; without torch: one clear error saying how
to export it), or a served model's URI (``triton://...``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edgevid.core.artifact import sidecar_path
from edgevid.core.formats import FOLDER_EXTENSIONS, graph_name, is_format
from edgevid.core.meta import META_FILENAME, ModelMeta
from edgevid.errors import ModelError


def resolve_model(model: str | os.PathLike) -> Path | str:
    """A model file for any accepted form (URIs such as triton://... pass through)."""
    text = str(model)
    if "://" in text:
        return text
    path = Path(model)
    if not path.is_dir():
        return path  # a file (or a missing one: the backend reports it)
    if (path / "best" / META_FILENAME).is_file():  # a training run folder
        path = path / "best"
    if (path / META_FILENAME).is_file() and not _model_files(path):
        return export_checkpoint(path)
    return pick_export(path)


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FOLDER_EXTENSIONS)


def pick_export(folder: Path) -> Path:
    """The graph of an export folder: the only one, else the FP32 ONNX graph (the reference
    every other precision was verified against); pass a file to choose another."""
    files = _model_files(folder)
    if not files:
        raise ModelError(
            f"{folder}: no model in this folder (no {', '.join(FOLDER_EXTENSIONS)} file, "
            f"no {META_FILENAME} checkpoint)"
        )
    if len(files) == 1:
        return files[0]
    for f in files:
        side = sidecar_path(f)
        if is_format(f, "onnx") and side.is_file() and ModelMeta.load(side).precision == "fp32":
            return f
    names = ", ".join(f.name for f in files)
    raise ModelError(f"{folder}: several models and no FP32 graph among them ({names}); pass one")


def export_checkpoint(checkpoint: Path) -> Path:
    """Export a training checkpoint to an FP32 ONNX graph once; later calls reuse it."""
    from edgevid.errors import MissingDependencyError, require

    try:
        require("torch", "train", "running a training checkpoint")
        require("onnx", "export", "running a training checkpoint")
    except MissingDependencyError as e:
        raise ModelError(
            f"{checkpoint}: a training checkpoint; the runtime needs an exported graph: "
            f"run `edgevid export --checkpoint {checkpoint}` where torch is installed "
            f"and pass the .onnx ({e.package} is not installed here)"
        ) from None
    from edgevid.export.torch_to_onnx import torch_to_onnx
    from edgevid.train.checkpoint import load_checkpoint

    meta = ModelMeta.load(checkpoint)
    graph = _cache_dir(checkpoint) / graph_name(meta.variant)
    if not graph.is_file():
        model, meta = load_checkpoint(checkpoint)
        torch_to_onnx(model, meta, graph)
    return graph


def _cache_dir(checkpoint: Path) -> Path:
    """One folder per checkpoint content (path + file sizes and times): edits re-export."""
    stamp = [str(checkpoint.resolve())]
    for p in sorted(checkpoint.iterdir()):
        st = p.stat()
        stamp.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "edgevid" / "checkpoint-onnx" / key
