"""Reading and writing edgevid ONNX graphs: metadata inside, sidecar beside. No torch.

An ONNX graph keeps the contract of :mod:`edgevid.core.artifact` with
``metadata_props["edgevid"]`` = ModelMeta JSON and the same JSON in the sidecar.

Everything after the PyTorch export (FP16, INT8, verification, TensorRT, Triton) uses only
this module, so it runs where torch is not installed (a Jetson building its engine).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgevid._atomic import atomic_path
from edgevid.core.artifact import read_meta, sidecar_path
from edgevid.core.meta import ONNX_META_KEY, ModelMeta
from edgevid.errors import ExportError, require


def embed_metadata(onnx_model, meta: ModelMeta) -> None:
    """Set metadata_props["edgevid"] (replacing an older value) on an onnx.ModelProto."""
    for prop in list(onnx_model.metadata_props):
        if prop.key == ONNX_META_KEY:
            onnx_model.metadata_props.remove(prop)
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, meta.to_json()


def read_metadata(path: str | os.PathLike) -> ModelMeta:
    """The ModelMeta embedded in an ONNX file (falls back to the sidecar)."""
    onnx = require("onnx", "export", "reading ONNX metadata")
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: ONNX file not found")
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as e:
        raise ExportError(f"{path}: not a readable ONNX file ({type(e).__name__})") from e
    return read_meta(path, {prop.key: prop.value for prop in model.metadata_props})


def save_onnx(onnx_model, meta: ModelMeta, path: str | os.PathLike) -> Path:
    """Check and write an onnx.ModelProto with its metadata + sidecar, atomically."""
    onnx = require("onnx", "export", "ONNX export")
    embed_metadata(onnx_model, meta)
    try:
        onnx.checker.check_model(onnx_model, full_check=False)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported graph fails onnx.checker: {str(e).splitlines()[0]}") from e
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(onnx_model, str(tmp))
    meta.save(sidecar_path(path))
    return path
