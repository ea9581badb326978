"""The artifact contract: what every edgevid model file is, whatever wrote or reads it.

  input   "pixel_values"  float32 (B, T, 3, H, W), normalised   [input_format "float"]
          "frames"        uint8   (B, T, H, W, 3), RGB           [input_format "uint8"]
  output  "logits"        float32 (B, num_classes)
  metadata: ModelMeta JSON inside the file when it has room (ONNX metadata_props["edgevid"],
  see :mod:`edgevid.core.onnx_file`) and in a sidecar ``<model>.json`` beside it.

The metadata (:class:`edgevid.core.meta.ModelMeta`) comes from inside the file when the format
has room for it (ONNX ``metadata_props["edgevid"]``), else from the sidecar ``<model>.json``
written beside it (TensorRT engines). Inside wins when both exist: the graph is the truth.

A graph whose input or output disagrees with its metadata (8 frames promised, 16 taken;
5 labels, 400 logits) would run and print nonsense; it is refused with a MetadataError.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edgevid.core.meta import ONNX_META_KEY, ModelMeta
from edgevid.errors import MetadataError

INPUT_NAME = "pixel_values"  # float32 (B, T, 3, H, W), normalised
RAW_INPUT_NAME = "frames"  # uint8 (B, T, H, W, 3), RGB
OUTPUT_NAME = "logits"  # float32 (B, num_classes)
INPUT_NAMES = {"float": INPUT_NAME, "uint8": RAW_INPUT_NAME}  # by meta.input_format

Dim = int | str | None  # a static size, or a symbolic / unknown one


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``<model>.json`` beside a model file: its metadata, for formats without room inside."""
    return Path(model_path).with_suffix(".json")


def input_name(meta: ModelMeta) -> str:
    """The graph input's name for ``meta.input_format``."""
    return expected_input_shape(meta)[0]


def read_meta(path: str | os.PathLike, embedded: dict[str, str] | None = None) -> ModelMeta:
    """``embedded`` metadata (e.g. ONNX custom_metadata_map) if it has ours, else the sidecar."""
    path = Path(path)
    if embedded and ONNX_META_KEY in embedded:
        return ModelMeta.from_json(embedded[ONNX_META_KEY], source=f"{path} (embedded metadata)")
    side = sidecar_path(path)
    if side.is_file():
        return ModelMeta.load(side)
    raise MetadataError(
        f"{path}: no edgevid metadata (neither inside the file nor in {side.name}); "
        "export it with `edgevid export`"
    )


def expected_input_shape(meta: ModelMeta) -> tuple[str, tuple[int, ...]]:
    """Input name and shape without batch: (T, 3, S, S) float or (T, S, S, 3) uint8."""
    t, s = meta.num_frames, meta.image_size
    if meta.input_format == "float":
        return INPUT_NAMES["float"], (t, 3, s, s)
    if meta.input_format == "uint8":
        return INPUT_NAMES["uint8"], (t, s, s, 3)
    raise MetadataError(f"unknown input_format {meta.input_format!r} (float or uint8)")


def check_io(
    path: str | os.PathLike,
    meta: ModelMeta,
    input_name: str,
    input_shape: Sequence[Dim],
    output_shape: Sequence[Dim],
) -> None:
    """Refuse a graph whose input/output shapes contradict ``meta`` (unknown dims pass)."""
    name, want = expected_input_shape(meta)
    if input_name != name:
        raise MetadataError(
            f"{path}: input is {input_name!r} but metadata input_format "
            f"{meta.input_format!r} means {name!r}"
        )
    got = tuple(input_shape)[1:]
    if len(got) != len(want) or any(
        isinstance(g, int) and g > 0 and g != w for g, w in zip(got, want, strict=True)
    ):
        raise MetadataError(
            f"{path}: input shape {_fmt(input_shape)} does not match its metadata "
            f"(T={meta.num_frames}, size={meta.image_size}: expected {_fmt(('B', *want))})"
        )
    check_logits(path, meta, output_shape)


def check_logits(path: str | os.PathLike, meta: ModelMeta, output_shape: Sequence[Dim]) -> None:
    c = output_shape[-1] if len(output_shape) else None
    if len(output_shape) != 2 or (isinstance(c, int) and c > 0 and c != meta.num_classes):
        raise MetadataError(
            f"{path}: output shape {_fmt(output_shape)} does not match the "
            f"{meta.num_classes} labels in its metadata"
        )


def _fmt(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
