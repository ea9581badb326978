"""Action segments: hysteresis over window results, and their scoring against ground truth.

Unit tests drive the Segmenter with probability sequences whose right answer is known, and
check the untrimmed synthetic video's ground truth; a trained model's segment F1 and
boundary error are measured by benchmarks/bench_segments.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgevid.runtime.segments import (
    Segment,
    SegmentConfig,
    Segmenter,
    segment_scores,
    temporal_iou,
)

LABELS = ["A", "B", "C"]
STEP = 0.5  # seconds between window results


def feed(seq: list[tuple[str | None, float]], cfg: SegmentConfig) -> tuple[list, list]:
    """(label or None for a flat window, probability) per window -> (events, segments)."""
    seg, events = Segmenter(cfg), []
    for i, (label, p) in enumerate(seq):
        probs = np.full(3, (1 - p) / 2) if label else np.full(3, 1 / 3)
        if label:
            probs[LABELS.index(label)] = p
        events += seg.update(i * STEP, probs, LABELS)
    events += seg.finish()
    return events, seg.segments


def test_a_label_must_hold_to_open_and_be_gone_to_close():
    cfg = SegmentConfig(open_threshold=0.6, close_threshold=0.4, min_on_s=1.0, min_off_s=1.0)
    seq = [("A", 0.9)] * 6 + [("A", 0.45)] + [("A", 0.9)] * 3 + [(None, 0)] * 4 + [("B", 0.8)]
    events, segments = feed(seq, cfg)
    assert [(e.state, e.label) for e in events] == [("open", "A"), ("closed", "A")]
    (a,) = segments
    # opens at t=1.0 (held from 0.0 for 1 s), starts where it began; the dip to 0.45 stays
    # above the close threshold; closes 1 s after the last window that held (t=4.5)
    assert (a.start, a.end, a.state) == (0.0, 4.5, "closed")
    assert events[0].end == 1.0 and a.score == pytest.approx(np.mean([0.9] * 9 + [0.45]))


def test_one_noisy_window_neither_opens_nor_breaks_a_segment():
    cfg = SegmentConfig(open_threshold=0.6, close_threshold=0.4, min_on_s=1.0, min_off_s=1.0)
    seq = [("A", 0.9)] * 5 + [("B", 0.9)] + [("A", 0.9)] * 5
    _, segments = feed(seq, cfg)
    assert [(s.label, s.start, s.end) for s in segments] == [("A", 0.0, 5.0)]


def test_another_label_taking_over_cuts_where_it_began():
    cfg = SegmentConfig(open_threshold=0.6, close_threshold=0.2, min_on_s=1.0, min_off_s=5.0)
    seq = [("A", 0.9)] * 6 + [("B", 0.7)] * 6  # A stays above 0.2 (0.15 is below: cut)
    events, segments = feed(seq, cfg)
    assert [(s.label, s.start, s.end, s.state) for s in segments] == [
        ("A", 0.0, 2.5, "closed"),
        ("B", 3.0, 5.5, "closed"),
    ]
    assert [e.state for e in events] == ["open", "closed", "open", "closed"]


def test_defaults_scale_with_the_clip_and_bad_thresholds_are_refused():
    cfg = SegmentConfig.for_clip(1.6)
    assert (cfg.min_on_s, cfg.min_off_s) == (0.8, 0.8)
    from edgevid.errors import EdgevidError

    with pytest.raises(EdgevidError, match="close <= open"):
        SegmentConfig(open_threshold=0.3, close_threshold=0.5).validate()


def test_scores_f1_at_iou_and_boundary_error():
    truth = [Segment("A", 0, 4, 1), Segment("B", 4, 8, 1), Segment("A", 8, 12, 1)]
    pred = [
        Segment("A", 0.5, 4.5, 0.9),  # IoU 3.5/4.5 = 0.78: match, errors 0.5 + 0.5
        Segment("B", 4.5, 6.0, 0.9),  # IoU 1.5/4 = 0.375: no match
        Segment("B", 8.0, 12.0, 0.9),  # wrong label
    ]
    s = segment_scores(pred, truth)
    assert (s["matched"], s["precision"], s["recall"]) == (1, 1 / 3, 1 / 3)
    assert s["f1"] == pytest.approx(1 / 3) and s["boundary_error_s"] == pytest.approx(0.5)
    assert temporal_iou((0, 4), (2, 6)) == pytest.approx(2 / 6)
    assert segment_scores(truth, truth)["f1"] == 1.0


def test_untrimmed_video_has_its_true_boundaries(tmp_path):
    from edgevid.core.video import probe_video
    from edgevid.train.synth import make_untrimmed_video

    truth = make_untrimmed_video(tmp_path / "u.mp4", classes=3, segments=5, seed=3)
    gt = json.loads((tmp_path / "u.json").read_text())
    assert probe_video(tmp_path / "u.mp4").num_frames == gt["frames"] == truth[-1].end_frame
    assert [s["label"] for s in gt["segments"]] == [s.label for s in truth]
    pairs = zip(truth, truth[1:], strict=False)
    assert all(a.label != b.label and a.end == b.start for a, b in pairs)
    assert all(3.0 - 0.1 <= s.end - s.start <= 5.0 + 0.1 for s in truth)
