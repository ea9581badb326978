"""Run statistics stay bounded however long a run lasts (an edge box runs for months): each
stage keeps exact counts and totals, and percentiles over its newest RECENT samples."""

from __future__ import annotations

import numpy as np
import pytest

from edgevid.runtime.stats import RECENT, Samples, Stats, percentiles


def test_samples_keep_the_newest_and_count_all():
    s = Samples()
    n = 3 * RECENT + 17
    for i in range(n):
        s.append(i * 1e-3)
    assert len(s) == s.count == n and len(s.recent) == RECENT  # memory flat, count exact
    assert s.total == pytest.approx(sum(i * 1e-3 for i in range(n)))
    assert list(s)[0] == pytest.approx((n - RECENT) * 1e-3)  # the newest RECENT are kept
    p = percentiles(s)
    assert p["n"] == n and p["mean"] == pytest.approx((n - 1) / 2, rel=1e-9)  # ms, of all
    assert p["p50"] == pytest.approx(np.percentile(np.array(list(s)) * 1e3, 50))


def test_extending_with_samples_adds_their_count_and_total():
    a, b = Samples([0.1, 0.2]), Samples([0.3] * (RECENT + 5))
    a.extend(b)
    assert len(a) == RECENT + 7 and a.total == pytest.approx(0.3 + 0.3 * (RECENT + 5))
    assert len(a.recent) == RECENT


def test_a_long_run_summary_counts_every_sample():
    stats = Stats()
    for _ in range(RECENT + 100):
        stats.add("decode", 0.002)
        stats.latency.append(0.1)
    s = stats.summary()
    assert s["stages_ms"]["decode"]["n"] == RECENT + 100
    assert s["stage_totals_s"]["decode"] == pytest.approx(0.002 * (RECENT + 100), rel=1e-6)
    assert s["latency_ms"]["p95"] == pytest.approx(100.0)
    assert all(len(v.recent) <= RECENT for v in stats.stages.values())


def test_lists_and_empty_inputs():
    assert percentiles([]) == {} and percentiles(Samples()) == {}
    assert percentiles([0.001, 0.003])["mean"] == pytest.approx(2.0)


def test_a_segmenter_keeps_the_newest_segments_and_counts_all():
    """A camera that sees thousands of actions over months: memory stays flat, the count
    stays exact, and a segment's score is the mean over its windows however long it ran."""
    from edgevid.runtime.segments import KEPT, SegmentConfig, Segmenter

    seg = Segmenter(SegmentConfig(min_on_s=0.0, min_off_s=0.0))
    labels, t = ["A", "B"], 0.0
    on, off = np.array([0.9, 0.1]), np.array([0.1, 0.9])
    for i in range(KEPT + 50):  # label A and B take turns: every window opens a segment
        seg.update(t, on if i % 2 == 0 else off, labels)
        t += 1.0
    assert seg.count == KEPT + 50 and len(seg.segments) == KEPT
    assert seg.segments[-1].start == t - 1.0  # the newest is kept
    long = Segmenter(SegmentConfig(min_on_s=0.0, min_off_s=0.0))
    for i in range(200):
        long.update(float(i), np.array([0.6 + 0.3 * (i % 2), 0.1]), labels)
    (closed,) = long.finish()
    assert closed.score == pytest.approx(0.75) and closed.end == 199.0
