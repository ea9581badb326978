"""The table of model-file formats: every stage that names, finds or opens a model file reads it.

A format is a row: the extensions a file of it has, the runtime backend that opens it, the
files that travel with it (sidecar metadata, an IR's weights), the name ``edgevid export``
gives it beside the graph it came from, and its Triton backend. The names export writes are
built here too, from the precision table:

    <variant>[-u8]<precision suffix>.onnx         the graph (``-u8``: takes uint8 frames)
    <graph stem>.xml + .bin                       its OpenVINO IR        (--openvino)
    <graph stem>-trt.engine                       its TensorRT engine    (--trt)
    <model>.json                                  the sidecar metadata of any of them
    <model>.backend.json                          what --device auto measured for it

To add a format, add a row (and its backend module).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgevid.core.artifact import sidecar_path
from edgevid.core.precision import get_precision
from edgevid.errors import ModelError

RAW_INPUT_SUFFIX = "-u8"  # graph stem mark of a uint8-frames graph (export --raw-input)
AUTO_CHOICE_SUFFIX = ".backend.json"  # <model>.backend.json: --device auto's measured choice


@dataclass(frozen=True)
class Format:
    name: str  # "onnx", "openvino", "tensorrt"
    extensions: tuple[str, ...]  # file extensions, lower case; the first is the one written
    backend: str  # runtime module defining BACKEND (imported only when a file of it is opened)
    companions: tuple[str, ...]  # extensions of files beside it that belong to it (+ sidecar)
    derived: str | None  # what export appends to the graph's stem ("" + ext); None: the graph
    in_folder: bool  # an export folder given as a model is searched for it
    # (Triton backend, file name in the version folder, instance kind: an engine runs on a GPU
    # only, a graph on the GPU where the server has one)
    triton: tuple[str, str, str] | None = None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx", (".onnx",), "edgevid.runtime.backends.onnxruntime", (), None,
               in_folder=True, triton=("onnxruntime", "model.onnx", "KIND_AUTO")),
        Format("openvino", (".xml",), "edgevid.runtime.backends.openvino", (".bin",), "",
               in_folder=False),
        Format("tensorrt", (".engine", ".plan"), "edgevid.runtime.backends.tensorrt", (), "-trt",
               in_folder=True, triton=("tensorrt", "model.plan", "KIND_GPU")),
    )
}  # fmt: skip
BY_EXTENSION: dict[str, Format] = {ext: f for f in FORMATS.values() for ext in f.extensions}
FOLDER_EXTENSIONS = tuple(e for f in FORMATS.values() if f.in_folder for e in f.extensions)


def format_of(path: str | os.PathLike) -> Format:
    """The row for ``path``'s extension; an unknown one raises ModelError naming the known."""
    ext = Path(path).suffix.lower()
    if ext not in BY_EXTENSION:
        raise ModelError(
            f"{path}: unknown model format {ext or '(no extension)'!r}; "
            f"edgevid runs {', '.join(sorted(BY_EXTENSION))}"
        )
    return BY_EXTENSION[ext]


def is_format(path: str | os.PathLike, name: str) -> bool:
    return Path(path).suffix.lower() in FORMATS[name].extensions


def graph_name(variant: str, precision: str = "fp32", raw_input: bool = False) -> str:
    """The file name export gives a graph: ``prune8.onnx``, ``prune8-u8-int8-static.onnx``."""
    stem = variant + (RAW_INPUT_SUFFIX if raw_input else "")
    return f"{stem}{get_precision(precision, ModelError).suffix}.onnx"


def derived_path(graph: str | os.PathLike, name: str) -> Path:
    """The file export writes in format ``name`` from ``graph``: x.onnx -> x.xml, x-trt.engine."""
    fmt, graph = FORMATS[name], Path(graph)
    if fmt.derived is None:
        raise ModelError(f"{name} files are not derived from a graph")
    return graph.with_name(f"{graph.stem}{fmt.derived}{fmt.extensions[0]}")


def model_files(path: str | os.PathLike) -> list[Path]:
    """``path`` and the files of it that exist beside it: its sidecar, an IR's weights."""
    path = Path(path)
    fmt = BY_EXTENSION.get(path.suffix.lower())
    beside = [sidecar_path(path), *(path.with_suffix(e) for e in (fmt.companions if fmt else ()))]
    return [path] + [p for p in beside if p.is_file()]


def auto_choice_path(model: str | os.PathLike) -> Path:
    """``<model>.backend.json``: where --device auto caches what it measured for ``model``."""
    return Path(model).with_suffix(AUTO_CHOICE_SUFFIX)
