"""Model metadata: the contract between training, export and runtime."""

from __future__ import annotations

import pytest

from edgevid.core.meta import ModelMeta, Sampling
from edgevid.errors import MetadataError


def test_round_trip(tmp_path):
    m = ModelMeta(
        labels=["a", "b"],
        variant="prune4",
        num_layers=8,
        kept_layers=[0, 1],
        sampling=Sampling(num_frames=8, clip_seconds=3.2, frame_stride=12, fps=30),
    )
    path = m.save(tmp_path / "m.json")
    assert ModelMeta.load(path) == m
    assert ModelMeta.from_json(m.to_json()) == m


def test_unknown_keys_from_newer_versions_are_ignored():
    m = ModelMeta.from_dict(
        {"labels": ["x"], "future_field": 1, "sampling": {"num_frames": 8, "new": 2}}
    )
    assert m.labels == ["x"]


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"variant": "x"}',
        '{"labels": []}',
        '{"labels": ["a"], "num_frames": [1, 2, 3], "bogus": 1, "mean": 5}',
    ],
)
def test_malformed(text):
    with pytest.raises(MetadataError):
        ModelMeta.from_json(text)
