"""Exported graphs -> a Triton Inference Server model repository.

    REPO/<name>/config.pbtxt       onnxruntime backend, dynamic batching
    REPO/<name>/1/model.onnx
    REPO/<name>/labels.txt         class names, so Triton can return them (classification)
    REPO/<name>/edgevid.json       the model metadata (preprocessing, sampling)
    REPO/<name>-trt/...            the same for a TensorRT engine (platform tensorrt_plan)

Every camera's client sends one clip (T frames) per request; Triton batches requests from
many cameras up to ``max_batch_size``. Each model folder is written atomically.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from edgevid._atomic import atomic_dir
from edgevid.errors import ExportError
from edgevid.export.onnx_io import OUTPUT_NAME, input_name, read_metadata, sidecar_path
from edgevid.meta import META_FILENAME, ModelMeta

PLATFORMS = {
    ".onnx": ("onnxruntime_onnx", "model.onnx"),
    ".engine": ("tensorrt_plan", "model.plan"),
}


def model_config(name: str, meta: ModelMeta, platform: str, max_batch_size: int) -> str:
    """The config.pbtxt text for one model (batch dimension implicit: max_batch_size > 0)."""
    t, s = meta.num_frames, meta.image_size
    if meta.input_format == "uint8":
        dtype, dims = "TYPE_UINT8", [t, s, s, 3]  # (T, H, W, 3)
    else:
        dtype, dims = "TYPE_FP32", [t, 3, s, s]  # (T, 3, H, W)
    preferred = sorted({b for b in (max_batch_size // 2, max_batch_size) if b >= 1})
    return f"""name: "{name}"
platform: "{platform}"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{input_name(meta)}"
    data_type: {dtype}
    dims: [ {", ".join(map(str, dims))} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {meta.num_classes} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(map(str, preferred))} ]
  max_queue_delay_microseconds: 5000
}}
"""


def add_model(
    repo: str | os.PathLike,
    model_path: str | os.PathLike,
    *,
    name: str | None = None,
    max_batch_size: int = 8,
) -> Path:
    """Add an ONNX graph or a TensorRT engine (with its sidecar) to the repository ``repo``."""
    model_path = Path(model_path)
    if model_path.suffix not in PLATFORMS:
        raise ExportError(f"{model_path}: Triton takes .onnx graphs or .engine files")
    if max_batch_size < 1:
        raise ExportError(f"max batch size must be at least 1, got {max_batch_size}")
    if model_path.suffix == ".onnx":
        meta = read_metadata(model_path)
    else:
        meta = ModelMeta.load(sidecar_path(model_path))
    platform, filename = PLATFORMS[model_path.suffix]
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "_", model_path.stem)
    if model_path.suffix == ".engine" and not name.endswith(("-trt", "_trt")):
        name = f"{name}-trt"  # never the same folder as the graph it was built from
    target = Path(repo) / name
    with atomic_dir(target) as tmp:
        (tmp / "1").mkdir()
        shutil.copyfile(model_path, tmp / "1" / filename)
        (tmp / "config.pbtxt").write_text(model_config(name, meta, platform, max_batch_size))
        (tmp / "labels.txt").write_text("\n".join(meta.labels) + "\n")
        meta.save(tmp / META_FILENAME)
    return target


def write_repository(
    repo: str | os.PathLike, models: list[Path], *, max_batch_size: int = 8
) -> list[Path]:
    """Add every graph and engine in ``models`` to ``repo``; returns the model folders."""
    return [add_model(repo, m, max_batch_size=max_batch_size) for m in models]
