"""Exported graphs -> a Triton Inference Server model repository.

    REPO/<name>/config.pbtxt       backend "onnxruntime", dynamic batching, one instance
                                   (KIND_AUTO: the GPU where there is one), a warm-up
                                   request of zeros, the metadata as the model parameter
                                   "edgevid" (JSON)
    REPO/<name>/1/model.onnx
    REPO/<name>/labels.txt         class names, so Triton can return them (classification)
    REPO/<name>/edgevid.json       the model metadata (preprocessing, sampling)
    REPO/<name>-trt/...            the same for a TensorRT engine (backend "tensorrt")

Every camera's client sends one clip (T frames) per request; Triton batches requests from
many cameras up to ``max_batch_size`` (the MAX of ``--batch``; for an engine, never more than
the engine's profile allows). ``edgevid run --model triton://HOST:PORT/<name>`` reads the
metadata back from the served config. Each model folder is written atomically.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from edgevid._atomic import atomic_dir
from edgevid.core.artifact import OUTPUT_NAME, input_name, sidecar_path
from edgevid.core.formats import BY_EXTENSION, FORMATS, is_format
from edgevid.core.meta import META_FILENAME, ModelMeta
from edgevid.core.onnx_file import read_metadata
from edgevid.errors import ExportError

# Each format's Triton backend, file name and instance kind is its row's `triton`
# (edgevid.core.formats). `backend:` rather than the legacy `platform:` (onnxruntime_onnx /
# tensorrt_plan), which Triton still accepts.
META_PARAMETER = "edgevid"  # config.pbtxt parameter holding the ModelMeta JSON
DEFAULT_MAX_BATCH = 8


def pbtxt_string(text: str) -> str:
    """``text`` as a protobuf text-format string literal (quotes and backslashes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_config(
    name: str, meta: ModelMeta, backend: str, max_batch_size: int, kind: str = "KIND_AUTO"
) -> str:
    """The config.pbtxt text for one model (batch dimension implicit: max_batch_size > 0):
    one instance of ``kind``, and a warm-up request (one clip of zeros) that the server runs
    before it reports the model ready, so a client's first request is not the slow one."""
    t, s = meta.num_frames, meta.image_size
    if meta.input_format == "uint8":
        dtype, dims = "TYPE_UINT8", [t, s, s, 3]  # (T, H, W, 3)
    else:
        dtype, dims = "TYPE_FP32", [t, 3, s, s]  # (T, 3, H, W)
    preferred = sorted({b for b in (max_batch_size // 2, max_batch_size) if b >= 1})
    return f"""name: "{name}"
backend: "{backend}"
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
instance_group [
  {{
    count: 1
    kind: {kind}
  }}
]
model_warmup [
  {{
    name: "zero clip"
    batch_size: 1
    inputs {{
      key: "{input_name(meta)}"
      value {{
        data_type: {dtype}
        dims: [ {", ".join(map(str, dims))} ]
        zero_data: true
      }}
    }}
  }}
]
parameters {{
  key: "{META_PARAMETER}"
  value {{ string_value: {pbtxt_string(json.dumps(meta.to_dict(), ensure_ascii=True))} }}
}}
"""


def add_model(
    repo: str | os.PathLike,
    model_path: str | os.PathLike,
    *,
    name: str | None = None,
    max_batch_size: int | None = None,
) -> Path:
    """Add an ONNX graph or a TensorRT engine (with its sidecar) to the repository ``repo``.

    ``max_batch_size`` defaults to the engine's profile maximum (8 for a graph); an engine
    is never declared with more than its profile allows (Triton would refuse to load it)."""
    model_path = Path(model_path)
    fmt = BY_EXTENSION.get(model_path.suffix.lower())
    if fmt is None or fmt.triton is None:
        served = sorted(e for f in FORMATS.values() if f.triton for e in f.extensions)
        raise ExportError(f"{model_path}: Triton takes {', '.join(served)} files")
    if fmt.name == "onnx":
        meta = read_metadata(model_path)
    else:
        meta = ModelMeta.load(sidecar_path(model_path))
    max_batch_size = resolve_max_batch(model_path, meta, max_batch_size)
    backend, filename, kind = fmt.triton
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "_", model_path.stem)
    mark = fmt.derived or ""  # never the same folder as the graph an engine was built from
    if mark and not name.endswith((mark, mark.replace("-", "_"))):
        name = f"{name}{mark}"
    target = Path(repo) / name
    with atomic_dir(target) as tmp:
        (tmp / "1").mkdir()
        shutil.copyfile(model_path, tmp / "1" / filename)
        (tmp / "config.pbtxt").write_text(model_config(name, meta, backend, max_batch_size, kind))
        (tmp / "labels.txt").write_text("\n".join(meta.labels) + "\n")
        meta.save(tmp / META_FILENAME)
    return target


def resolve_max_batch(model_path: Path, meta: ModelMeta, requested: int | None) -> int:
    """The max_batch_size to declare: ``requested``, bounded by an engine's profile."""
    is_engine = is_format(model_path, "tensorrt")
    built = (meta.extra.get("engine") or {}).get("batch") if is_engine else None
    engine_max = int(built[2]) if built else None
    size = requested if requested is not None else (engine_max or DEFAULT_MAX_BATCH)
    if size < 1:
        raise ExportError(f"max batch size must be at least 1, got {size}")
    if engine_max is not None and size > engine_max:
        raise ExportError(
            f"{model_path}: the engine takes batches up to {engine_max}, not {size}: "
            f"rebuild it with --batch MIN:OPT:{size} or serve it with a smaller --batch"
        )
    return size


def write_repository(
    repo: str | os.PathLike, models: list[Path], *, max_batch_size: int | None = None
) -> list[Path]:
    """Add every graph and engine in ``models`` to ``repo``; returns the model folders."""
    return [add_model(repo, m, max_batch_size=max_batch_size) for m in models]
