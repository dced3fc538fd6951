"""Screening metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ctscreen.evaluation.classification import (
    auc,
    bootstrap_auc_ci,
    breakdown,
    operating_point,
    roc,
    threshold_for_sensitivity,
)
from ctscreen.evaluation.metrics import dice

LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.4, 0.35, 0.8]


def test_auc_by_hand():
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3 of 4
    assert auc(LABELS, SCORES) == pytest.approx(0.75)
    assert auc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)  # a tie counts one half
    assert auc([1, 1], [0.2, 0.3]) is None


def test_roc_curve_ends_at_corners():
    curve = roc(LABELS, SCORES)
    assert curve["fpr"][0] == 0 and curve["tpr"][0] == 0
    assert curve["fpr"][-1] == 1 and curve["tpr"][-1] == 1


def test_operating_point_by_hand():
    point = operating_point(LABELS, SCORES, threshold=0.35)
    assert (point.tp, point.fn, point.fp, point.tn) == (2, 0, 1, 1)
    assert point.sensitivity == 1.0 and point.specificity == 0.5
    assert operating_point([0, 0], [0.9, 0.1], 0.5).sensitivity is None


def test_threshold_reaches_target_sensitivity():
    assert threshold_for_sensitivity(LABELS, SCORES, 0.5) == 0.8
    assert threshold_for_sensitivity(LABELS, SCORES, 1.0) == 0.35
    labels = np.r_[np.ones(40), np.zeros(60)].astype(int)
    scores = np.random.default_rng(0).random(100) + labels * 0.3
    for target in (0.8, 0.9, 0.95, 0.975):
        threshold = threshold_for_sensitivity(labels, scores, target)
        assert operating_point(labels, scores, threshold).sensitivity >= target
        # the highest such threshold: any higher one misses the target
        assert operating_point(labels, scores, np.nextafter(threshold, 2)).sensitivity < target
    with pytest.raises(ValueError, match="without positive cases"):
        threshold_for_sensitivity([0, 0], [0.1, 0.2], 0.9)


def test_bootstrap_ci_brackets_the_auc():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(60), np.zeros(60)].astype(int)
    scores = rng.normal(labels * 1.0, 1.0)
    low, high = bootstrap_auc_ci(labels, scores, n_resamples=500)
    assert 0 <= low < auc(labels, scores) < high <= 1
    assert high - low < 0.3
    assert bootstrap_auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_resamples=200) == (1.0, 1.0)


def test_breakdown_by_group():
    groups = ["a", "b", "a", "b"]
    result = breakdown(LABELS, SCORES, 0.35, groups)
    assert result["a"]["cases"] == 2 and result["a"]["auc"] == 1.0
    assert result["b"]["fp"] == 1 and result["b"]["tp"] == 1


def test_dice_by_hand():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros(3), np.zeros(3)) == 1.0
    assert dice(a, np.zeros(4)) == 0.0
