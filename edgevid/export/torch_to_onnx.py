"""PyTorch model -> FP32 ONNX graph with dynamic batch and edgevid metadata embedded.

Contract of every edgevid ONNX graph (the runtime relies on it, nothing else):
  input   "pixel_values"  float32 (B, T, 3, H, W), normalised   [input_format "float"]
          "frames"        uint8   (B, T, H, W, 3), RGB           [input_format "uint8"]
  output  "logits"        float32 (B, num_classes)
  metadata_props["edgevid"] = ModelMeta JSON; the same JSON in a sidecar <model>.json
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from edgevid._atomic import atomic_path
from edgevid.errors import ExportError, require
from edgevid.meta import ONNX_META_KEY, ModelMeta

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


def sidecar_path(model_path: str | os.PathLike) -> Path:
    return Path(model_path).with_suffix(".json")


def embed_metadata(onnx_model, meta: ModelMeta) -> None:
    """Set metadata_props["edgevid"] (replacing an older value) on an onnx.ModelProto."""
    for prop in list(onnx_model.metadata_props):
        if prop.key == ONNX_META_KEY:
            onnx_model.metadata_props.remove(prop)
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, meta.to_json()


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


def torch_to_onnx(
    model: torch.nn.Module,
    meta: ModelMeta,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``model`` (pixel_values (B, T, 3, H, W) -> logits) to ``path``.

    The TorchScript-based exporter is used: it emits the requested opset directly,
    including opset 16 for TensorRT 8.5 on JetPack 5.
    """
    onnx = require("onnx", "export", "ONNX export")
    model = model.eval()
    x = torch.zeros(1, meta.num_frames, 3, meta.image_size, meta.image_size)  # (B, T, C, H, W)

    class _Logits(torch.nn.Module):  # a plain tensor out, not a HF ModelOutput
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.inner(pixel_values=pixel_values).logits

    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model),
            (x,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        onnx_model = onnx.load(str(tmp))
    return save_onnx(onnx_model, meta.replace(precision="fp32"), path)
