"""Smoothing of class probabilities, the "uncertain" threshold and top-k."""

from __future__ import annotations

import numpy as np
import pytest

from edgevid.errors import EdgevidError
from edgevid.runtime.smoothing import EMA, UNCERTAIN, Mean, decide, make_smoother, softmax

P = [np.array(p, np.float32) for p in ([0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6])]


def test_ema_is_a_weighted_recursion():
    ema = make_smoother("ema:0.6")
    assert isinstance(ema, EMA)
    s1, s2, s3 = (ema(p) for p in P)
    np.testing.assert_allclose(s1, P[0])
    np.testing.assert_allclose(s2, 0.6 * P[1] + 0.4 * P[0], rtol=1e-6)
    np.testing.assert_allclose(s3, 0.6 * P[2] + 0.4 * (0.6 * P[1] + 0.4 * P[0]), rtol=1e-6)
    assert s3.sum() == pytest.approx(1.0)
    ema.reset()
    np.testing.assert_allclose(ema(P[2]), P[2])


def test_mean_is_a_sliding_window():
    mean = make_smoother("mean:2")
    assert isinstance(mean, Mean)
    out = [mean(p) for p in P]
    np.testing.assert_allclose(out[0], P[0])
    np.testing.assert_allclose(out[1], (P[0] + P[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[2], (P[1] + P[2]) / 2, rtol=1e-6)  # P[0] left the window


def test_none_passes_through():
    none = make_smoother("none")
    for p in P:
        np.testing.assert_array_equal(none(p), p)


@pytest.mark.parametrize("spec", ["ema:0", "ema:1.5", "mean:0", "median:3", "ema:x", "mean:2.5"])
def test_bad_specs_are_clear_errors(spec):
    with pytest.raises(EdgevidError, match="--smooth"):
        make_smoother(spec)


def test_decide_threshold_and_top_k():
    labels = ["a", "b", "c"]
    d = decide(P[0], labels, threshold=0.5, top_k=2)
    assert d.label == "a" and d.score == pytest.approx(0.7)
    assert [lab for lab, _ in d.top_k] == ["a", "b"]
    d = decide(P[2], labels, threshold=0.65, top_k=5)
    assert d.label == UNCERTAIN and d.score == pytest.approx(0.6)
    assert len(d.top_k) == 3 and d.top_k[0][0] == "c"


def test_softmax_is_stable_and_normalised():
    z = np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0]], np.float32)
    p = softmax(z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)
    assert np.argmax(p[0]) == 1
