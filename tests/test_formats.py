"""The model-file format table (edgevid.core.formats): every row opens with its backend, is
named by export as the table says, and travels with its companions; cases come from the
table, so a new row is tested without a test edit."""

from __future__ import annotations

import shutil

import pytest

from edgevid.core.formats import (
    BY_EXTENSION,
    FOLDER_EXTENSIONS,
    FORMATS,
    derived_path,
    format_of,
    graph_name,
    model_files,
)
from edgevid.core.precision import EXPORTED, PRECISIONS
from edgevid.errors import ExportError, ModelError
from edgevid.runtime.backends import backend_class

EXTENSIONS = sorted(BY_EXTENSION)


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_every_extension_opens_with_its_rows_backend(ext):
    fmt = format_of(f"model{ext.upper()}")  # extensions match in any case
    assert ext in fmt.extensions
    assert backend_class(f"model{ext}").__module__ == fmt.backend


def test_an_unknown_extension_names_every_known_one():
    with pytest.raises(ModelError) as e:
        format_of("model.tflite")
    for ext in EXTENSIONS:
        assert ext in str(e.value)


@pytest.mark.parametrize("raw", [False, True], ids=["float", "u8"])
@pytest.mark.parametrize("precision", ["fp32", *EXPORTED])
def test_graph_names_follow_the_precision_table(precision, raw):
    name = graph_name("prune8", precision, raw)
    stem = "prune8-u8" if raw else "prune8"
    assert name == f"{stem}{PRECISIONS[precision].suffix}.onnx"
    assert format_of(name).name == "onnx"
    with pytest.raises(ModelError, match="unknown precision"):
        graph_name("prune8", "fp8")


@pytest.mark.parametrize("name", [n for n, f in FORMATS.items() if f.derived is not None])
def test_derived_files_keep_the_graph_stem_and_open_as_their_format(name):
    path = derived_path("out/prune8-fp16.onnx", name)
    assert path.name.startswith("prune8-fp16") and format_of(path).name == name


def test_folder_search_takes_the_rows_that_ask_for_it():
    assert set(FOLDER_EXTENSIONS) == {
        e for f in FORMATS.values() if f.in_folder for e in f.extensions
    }


def test_export_writes_the_names_the_table_gives(tiny_onnx, tmp_path):
    """The OpenVINO IR as export writes it (derived_path): found, companions and all, and
    moved by export's publish step by the same rule (model_files)."""
    pytest.importorskip("openvino")
    from edgevid.export.openvino_ir import onnx_to_ir
    from edgevid.export.pipeline import ExportResult, _publish

    graph = tmp_path / "stage" / graph_name("tiny-prune8")
    graph.parent.mkdir()
    shutil.copy(tiny_onnx, graph)
    shutil.copy(tiny_onnx.with_suffix(".json"), graph.with_suffix(".json"))
    ir = onnx_to_ir(graph, derived_path(graph, "openvino"))
    assert [p.suffix for p in model_files(ir)] == [".xml", ".json", ".bin"]
    out = tmp_path / "out"
    out.mkdir()
    result = _publish(ExportResult(graphs=[graph], openvino=[ir]), graph.parent, out, None,
                      max_batch=1)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "tiny-prune8.bin", "tiny-prune8.json", "tiny-prune8.onnx", "tiny-prune8.xml",
    ]  # fmt: skip
    from edgevid.runtime.backends import load_backend

    backend = load_backend(result.openvino[0], device="openvino")
    assert backend.meta.labels == load_backend(result.graphs[0], device="cpu").meta.labels


def test_triton_takes_the_rows_it_serves(tmp_path):
    from edgevid.export.triton import add_model

    ir = tmp_path / "m.xml"
    ir.write_text("<net/>")
    with pytest.raises(ExportError) as e:
        add_model(tmp_path / "repo", ir)
    served = [e for f in FORMATS.values() if f.triton for e in f.extensions]
    takes = str(e.value).split(": ", 1)[1]
    assert all(ext in takes for ext in served) and ".xml" not in takes
