"""Property tests: every parser of outside input either returns a valid value or raises the
one edgevid error for it, whatever it is fed (hypothesis generates the input).

Parsers: model metadata (edgevid.json, sidecars, embedded ONNX), manifests, run configs,
source URIs, --smooth, --batch, --ratios.
"""

from __future__ import annotations

import contextlib
import json
import math

import click
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgevid.cli.data import RATIOS
from edgevid.core.manifest import Manifest
from edgevid.core.meta import ModelMeta
from edgevid.core.precision import PRECISIONS
from edgevid.errors import DataError, EdgevidError, MetadataError, SourceError
from edgevid.runtime.smoothing import make_smoother
from edgevid.runtime.sources import _KINDS, resolve_source

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

VALID_META = ModelMeta(labels=["a", "b"], variant="tiny-prune8", image_size=32).to_dict()


def near(valid: dict) -> st.SearchStrategy[dict]:
    """A valid document with one field replaced, removed, or one nested value replaced."""
    keys = sorted(valid)

    def replace(key, value):
        d = json.loads(json.dumps(valid))
        d[key] = value
        return d

    def drop(key):
        d = json.loads(json.dumps(valid))
        d.pop(key)
        return d

    return st.one_of(
        st.builds(replace, st.sampled_from(keys), json_values),
        st.builds(drop, st.sampled_from(keys)),
    )


@SETTINGS
@given(st.one_of(json_values, near(VALID_META)))
def test_metadata_parser(doc):
    try:
        meta = ModelMeta.from_json(json.dumps(doc), source="m.json")
    except MetadataError as e:
        assert str(e).startswith("m.json") and "\n" not in str(e)
        return
    # what it accepts is usable as it is: every field has its type and range
    assert meta.labels and all(isinstance(x, str) and x.strip() for x in meta.labels)
    assert isinstance(meta.image_size, int) and 8 <= meta.image_size <= 8192
    assert isinstance(meta.num_frames, int) and meta.num_frames >= 1
    assert len(meta.mean) == 3 and all(0 < s <= 1 for s in meta.std)
    assert meta.precision in PRECISIONS


@SETTINGS
@given(st.text(max_size=40))
def test_metadata_parser_on_text(text):
    with contextlib.suppress(MetadataError):  # anything else fails the test
        ModelMeta.from_json(text, source="m.json")


def _valid_manifest() -> dict:
    return {
        "version": 1, "root": "/data", "classes": ["a", "b"], "seed": 0,
        "ratios": [0.8, 0.1, 0.1], "grouping": "none", "extra": {},
        "splits": {"train": [{"path": "a/1.mp4", "label": 0, "group": "a/1"}],
                   "val": [{"path": "b/1.mp4", "label": 1, "group": "b/1"}], "test": []},
    }  # fmt: skip


PATHS = ["a/1.mp4", "../x.mp4", "/etc/passwd", "", "a/../../b.mp4"]


@SETTINGS
@given(doc=st.one_of(json_values, near(_valid_manifest())), path=st.sampled_from(PATHS))
def test_manifest_parser(doc, path, tmp_path):
    if isinstance(doc, dict) and isinstance(doc.get("splits"), dict):
        for samples in doc["splits"].values():
            if isinstance(samples, list) and samples and isinstance(samples[0], dict):
                samples[0]["path"] = path
    file = tmp_path / "manifest.json"
    file.write_text(json.dumps(doc))
    try:
        m = Manifest.load(file)
    except DataError as e:
        assert str(e).startswith(str(file)) and "\n" not in str(e)
        return
    for split, samples in m.splits.items():
        assert split in ("train", "val", "test")
        for s in samples:
            assert 0 <= s.label < len(m.classes)
            assert m.paths(split)[0].resolve().is_relative_to(m.root)


@SETTINGS
@given(st.text(max_size=60))
@example("~\x00")  # found by hypothesis: expanduser raised ValueError (embedded null byte)
def test_source_uri_parser(uri):
    """Any string resolves to one kind of source (nothing is opened) or is refused clearly."""
    try:
        spec = resolve_source(uri)
    except SourceError as e:
        assert "\n" not in str(e)
        return
    assert spec.kind in {k.name for k in _KINDS}  # the source registry


SMOOTH_ARGS = st.one_of(st.floats(allow_nan=True), st.integers(-5, 10**9), st.text(max_size=4))
SMOOTH_NAMES = st.sampled_from(["ema", "mean", "none", "EMA", "median"])


@SETTINGS
@given(st.one_of(st.text(max_size=12), st.builds("{}:{}".format, SMOOTH_NAMES, SMOOTH_ARGS)))
def test_smooth_parser(spec):
    import numpy as np

    try:
        smoother = make_smoother(spec)
    except EdgevidError as e:
        assert "--smooth" in str(e) and "\n" not in str(e)
        return
    out = smoother(np.array([0.2, 0.8], np.float32))
    out = smoother(np.array([0.6, 0.4], np.float32))
    assert np.all(np.isfinite(out)) and abs(float(out.sum()) - 1) < 1e-5


@SETTINGS
@given(st.one_of(st.text(max_size=12), st.lists(st.integers(-3, 40), min_size=1, max_size=4)
                 .map(lambda v: ":".join(map(str, v)))))  # fmt: skip
def test_batch_parser(text):
    from edgevid.errors import ExportError
    from edgevid.export.pipeline import parse_batch

    try:
        lo, opt, hi = parse_batch(text)
    except ExportError as e:
        assert "--batch" in str(e)
        return
    assert 1 <= lo <= opt <= hi


@SETTINGS
@given(st.one_of(st.text(max_size=16), st.lists(st.floats(allow_nan=True), min_size=1,
                 max_size=4).map(lambda v: ",".join(map(str, v)))))  # fmt: skip
def test_ratios_parser(text):
    try:
        r = RATIOS.convert(text, None, None)
    except click.BadParameter:
        return
    assert len(r) == 3 and all(math.isfinite(v) and v >= 0 for v in r)
    assert abs(sum(r) - 1) < 1e-6 and r[0] > 0


@SETTINGS
@given(st.one_of(json_values, near({"variant": "tiny-scratch", "epochs": 3, "lr": 1e-3,
                                     "augment": {"enabled": True, "hflip": 0.0}})))  # fmt: skip
def test_run_config_parser(doc):
    from edgevid.core.schema import validate
    from edgevid.train.config import TrainConfig

    try:
        validate(TrainConfig, doc, "config.json", required=("variant",))
    except ValueError as e:
        assert str(e).startswith("config.json") and "\n" not in str(e)
        return
    with contextlib.suppress(DataError):  # the config's own rules (epochs >= 1 ...)
        TrainConfig.from_dict(doc)


def test_resume_state_parser_is_total(tmp_path):
    """The resume state's JSON decoder returns a state or refuses with ModelError."""
    pytest.importorskip("torch")
    from hypothesis import given as given_

    from edgevid.errors import ModelError
    from edgevid.train.checkpoint import STATE_FILENAME, load_training_state

    @SETTINGS
    @given_(json_values)
    def check(doc):
        (tmp_path / STATE_FILENAME).write_text(json.dumps({"format": 2, "state": doc}))
        try:
            load_training_state(tmp_path)
        except ModelError as e:
            assert "\n" not in str(e)

    check()
