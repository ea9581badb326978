"""The versioned output contract (edgevid/runtime/records.py, edgevid/schemas/*.json): the
schema files are valid JSON Schema, shipped with the package, agree on the envelope, and
describe what the runtime writes; live segments carry wall-clock times."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgevid.runtime.records import SCHEMA_VERSION, TYPES, iso_time, record, schema
from edgevid.runtime.segments import SegmentConfig, Segmenter
from tests.conftest import ROOT, check_record

ENVELOPE = ("type", "schema", "time", "unix")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("kind", TYPES)
def test_schema_files_are_valid_and_share_the_envelope(kind):
    s = schema(kind)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$id"].endswith(f"/edgevid/schemas/{kind}.json")
    assert list(s["properties"])[:4] == list(ENVELOPE) and set(ENVELOPE) <= set(s["required"])
    assert s["properties"]["type"] == {"const": kind, "description": "the record type"}
    assert s["properties"]["schema"]["const"] == SCHEMA_VERSION
    others = [schema(k)["properties"] for k in TYPES if k != kind]
    for field in ENVELOPE[2:]:  # time and unix mean the same in every type
        assert all(p[field]["type"] == s["properties"][field]["type"] for p in others)
    assert set(s["required"]) <= set(s["properties"])


def test_schemas_are_package_data():
    """pyproject's package-data globs cover every schema file (a wheel carries them)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["edgevid"]
    shipped = {p for g in globs for p in (ROOT / "edgevid").glob(g)}
    assert {ROOT / "edgevid" / "schemas" / f"{k}.json" for k in TYPES} <= shipped
    assert sorted(p.stem for p in (ROOT / "edgevid" / "schemas").iterdir()) == sorted(TYPES)


def test_a_bad_record_fails_its_schema():
    """The check the tests apply to every line really checks."""
    good = {"type": "segment", "schema": 1, "time": iso_time(1.8e9), "unix": 1.8e9, "id": "a",
            "stream": 0, "source": "x", "label": "A", "start": 0.0, "end": 1.0, "score": 0.5,
            "state": "open"}  # fmt: skip
    check_record(good)
    for bad in ({"state": "gone"}, {"schema": 2}, {"time": "1800000000"}, {"id": ""},
                {"start": -1}, {"type": "result"}):  # fmt: skip
        with pytest.raises(AssertionError):
            check_record({**good, **bad}, "segment")
    with pytest.raises(AssertionError, match="missing from the schema"):
        check_record({**good, "extra": 1})


def test_iso_time_is_utc_with_milliseconds():
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1796401285.1234) == "2026-12-04T16:21:25.123Z"
    assert parse_iso(iso_time(1796401285.5)) == 1796401285.5


def test_segment_ids_pair_events_and_live_segments_get_wall_clock_times():
    """One id per segment, on its open and its closed record; with a clock (a live stream)
    start and end are also on the wall clock, and the records validate."""
    labels = ["A", "B"]
    a, b = np.array([0.9, 0.1]), np.array([0.1, 0.9])
    clock = 1.8e9  # Unix time of stream time 0
    seg = Segmenter(SegmentConfig(min_on_s=0.5, min_off_s=0.5))
    events = []
    for i, p in enumerate([a] * 8 + [b] * 8):
        events += seg.update(i * 0.25, p, labels, clock)
    events += seg.finish()
    records = [check_record(e.to_json(), "segment") for e in events]
    assert [(r["label"], r["state"]) for r in records] == [
        ("A", "open"), ("A", "closed"), ("B", "open"), ("B", "closed")]  # fmt: skip
    assert records[0]["id"] == records[1]["id"] != records[2]["id"] == records[3]["id"]
    for r in records:
        assert parse_iso(r["start_time"]) == pytest.approx(clock + r["start"], abs=1e-3)
        assert parse_iso(r["end_time"]) == pytest.approx(clock + r["end"], abs=1e-3)
    file_seg = Segmenter(SegmentConfig(min_on_s=0.5, min_off_s=0.5))
    for i in range(4):
        file_seg.update(i * 0.25, a, labels)  # a file: media time only
    (rec,) = [check_record(s.to_json()) for s in file_seg.segments]
    assert "start_time" not in rec and "end_time" not in rec


def test_live_results_carry_their_stream_clock(tiny_onnx):
    """A live stream's results say when stream time 0 was on the wall clock: timestamp +
    clock is when the newest frame left the decoder, just before the result."""
    from edgevid.runtime.capture import CaptureConfig
    from edgevid.runtime.streamer import Streamer
    from tests.test_sources import FAST, MjpegServer

    with MjpegServer(fps=50) as srv:
        s = Streamer(srv.url, tiny_onnx, every=4, max_frames=24, options=FAST,
                     capture=CaptureConfig(reconnect_s=5.0))  # fmt: skip
        results = [r for step in s.steps() for r in step.results]
    assert results and len({r.clock for r in results}) == 1  # fixed at the first frame
    for r in results:
        frame_at = r.clock + r.timestamp
        assert 0 <= r.time - frame_at < 5.0
        assert r.time - frame_at == pytest.approx(
            (r.latency_ms["total"] - r.latency_ms["decode"]) / 1e3, abs=0.05
        )
        check_record(r.to_json(), "result")
    json.dumps(results[0].to_json())  # plain JSON


def test_file_results_have_no_clock(tiny_onnx, media_dir):
    from edgevid.runtime.streamer import stream

    (r, *_) = stream(media_dir / "carphone_pristine.mp4", tiny_onnx, max_frames=8)
    assert r.clock is None
    assert Path(media_dir / "carphone_pristine.mp4").name in r.to_json()["source"]


@pytest.mark.slow
def test_live_segment_events_carry_wall_clock_times(tiny_onnx, tmp_path):
    """`edgevid run` on a live stream (MJPEG over HTTP): each segment's open and closed
    records share an id and put start/end on the wall clock, at the time of the run."""
    import time

    from tests.conftest import read_records
    from tests.test_sources import MjpegServer
    from tests.test_stream import edgevid

    events = tmp_path / "ev.jsonl"
    began = time.time()
    with MjpegServer(fps=50) as srv:
        proc = edgevid("run", "-s", srv.url, "-m", str(tiny_onnx), "--max-frames", "60",
                       "--json", str(tmp_path / "r.jsonl"), "--events", str(events),
                       "--segment-threshold", "0", "--segment-release", "0",
                       "--segment-min-s", "0", "--timeout", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = read_records(events, "segment")
    opened = [r["id"] for r in records if r["state"] == "open"]
    assert opened and opened == [r["id"] for r in records if r["state"] == "closed"]
    clock = parse_iso(records[0]["start_time"]) - records[0]["start"]  # one per stream
    assert began - 1 <= clock <= parse_iso(records[0]["time"]) <= time.time() + 1
    for r in records:
        assert parse_iso(r["start_time"]) - r["start"] == pytest.approx(clock, abs=2e-3)
        assert parse_iso(r["end_time"]) - r["end"] == pytest.approx(clock, abs=2e-3)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_time_and_unix_are_the_same_millisecond(unix):
    rec = record("status", unix, {})
    assert rec["unix"] == round(unix, 3)
    assert parse_iso(rec["time"]) == pytest.approx(rec["unix"], abs=1e-6)
