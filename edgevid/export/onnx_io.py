"""Reading and writing edgevid ONNX graphs: names, metadata, sidecars. No torch.

Contract of every edgevid ONNX graph (the runtime relies on it, nothing else):
  input   "pixel_values"  float32 (B, T, 3, H, W), normalised   [input_format "float"]
          "frames"        uint8   (B, T, H, W, 3), RGB           [input_format "uint8"]
  output  "logits"        float32 (B, num_classes)
  metadata_props["edgevid"] = ModelMeta JSON; the same JSON in a sidecar <model>.json

Everything after the PyTorch export (FP16, INT8, verification, TensorRT, Triton) uses only
this module, so it runs where torch is not installed (a Jetson building its engine).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgevid._atomic import atomic_path
from edgevid.errors import ExportError, require
from edgevid.meta import ONNX_META_KEY, ModelMeta

INPUT_NAME = "pixel_values"  # float32 (B, T, 3, H, W), normalised
RAW_INPUT_NAME = "frames"  # uint8 (B, T, H, W, 3), RGB
OUTPUT_NAME = "logits"  # float32 (B, num_classes)


def sidecar_path(model_path: str | os.PathLike) -> Path:
    return Path(model_path).with_suffix(".json")


def input_name(meta: ModelMeta) -> str:
    return RAW_INPUT_NAME if meta.input_format == "uint8" else INPUT_NAME


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
    for prop in model.metadata_props:
        if prop.key == ONNX_META_KEY:
            return ModelMeta.from_json(prop.value, source=f"{path} metadata_props")
    return ModelMeta.load(sidecar_path(path))


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
