"""The precision table and the calibration-method table drive every stage; unknown names fail."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgevid.cli import main
from edgevid.core.precision import (
    CALIB_METHODS,
    EXPORTED,
    OPENVINO,
    PRECISIONS,
    get_calib_method,
    get_precision,
)
from edgevid.errors import ExportError, MetadataError


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_every_row_is_complete_and_names_its_file(name):
    p = get_precision(name)
    assert p.name == name
    assert p.suffix == ("" if name == "fp32" else f"-{name}")  # <variant><suffix>.onnx
    assert name.startswith(p.column)
    assert 0 < p.tolerance.min_agreement <= 1 and 0 <= p.tolerance.min_cosine <= 1
    assert not p.calibrated or p.column == "int8"  # only INT8 needs calibration clips
    assert p.trt_min >= (8, 5)


def test_unknown_precision_is_an_error_everywhere(tmp_path):
    from edgevid.calib.quantize import quantize
    from edgevid.export.pipeline import ExportConfig, check_config
    from edgevid.runtime.backends.trt_plan import BuildRequest, DeviceFacts, plan_build

    with pytest.raises(MetadataError, match="unknown precision 'fp8'"):
        get_precision("fp8")
    with pytest.raises(ExportError, match="unknown precision 'fp8'"):
        plan_build("fp8", BuildRequest(), DeviceFacts("10.3.0.30", "Orin", (8, 7), 16, 2))
    with pytest.raises(ExportError, match="unknown precision 'fp8'"):
        check_config(ExportConfig(variant="tiny-prune8", precisions=("fp8",)))
    with pytest.raises(ExportError, match="unknown precision 'fp8'"):
        quantize(tmp_path / "a.onnx", tmp_path / "b.onnx", "fp8")
    with pytest.raises(ExportError, match="not an INT8 precision"):
        quantize(tmp_path / "a.onnx", tmp_path / "b.onnx", "fp16")
    r = CliRunner().invoke(main, ["export", "--variant", "tiny-prune8", "--precision", "fp8"])
    assert r.exit_code == 2 and "fp8" in r.output


def test_metadata_of_unknown_precision_is_refused_before_verification(tiny_onnx, tmp_path):
    import shutil

    import numpy as np

    from edgevid.core.clips import ClipSet
    from edgevid.core.onnx_file import read_metadata
    from edgevid.export.verify import verify_graph

    graph = tmp_path / "odd.onnx"
    shutil.copy(tiny_onnx, graph)
    meta = read_metadata(tiny_onnx)
    sidecar = meta.to_dict() | {"precision": "fp8"}
    graph.with_suffix(".json").write_text(json.dumps(sidecar))
    import onnx

    model = onnx.load(str(graph))
    for prop in model.metadata_props:
        if prop.key == "edgevid":
            prop.value = json.dumps(sidecar)
    onnx.save(model, str(graph))
    s = meta.image_size
    clips = ClipSet(np.zeros((1, meta.num_frames, s, s, 3), np.uint8), [None], ["x"])
    reference = np.zeros((1, meta.num_classes), np.float32)
    with pytest.raises(MetadataError, match="precision.*'fp8'"):
        verify_graph(graph, reference, clips)


def test_cli_choices_come_from_the_tables():
    r = CliRunner().invoke(main, ["export", "--help"])
    for name in (*EXPORTED, *CALIB_METHODS):
        assert name in r.output
    assert "bf16" in OPENVINO and "bf16" not in EXPORTED  # a runtime hint, not an export
    with pytest.raises(ExportError, match="choose minmax, entropy, percentile"):
        get_calib_method("magic", ExportError)


def test_verification_table_columns_line_up_for_long_model_names():
    from edgevid.export.verify import Verification, format_table

    def row(model: str, precision: str) -> Verification:
        return Verification(model, precision, 40, 0.1, 0.01, 0.999, 1.0, 0.7, 0.7, True, "")

    short, long = "tiny-prune8.onnx", "tiny-timesformer-int8-dynamic.onnx"  # 34 characters
    lines = format_table([row(short, "fp32"), row(long, "int8-dynamic")]).splitlines()
    columns = ("precision", "fp32", "int8-dynamic")
    starts = {line.rindex(p) for line, p in zip(lines, columns, strict=True)}
    assert len(starts) == 1 and lines[2].startswith(long + " ")
