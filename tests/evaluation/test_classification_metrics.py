"""Screening metrics against values computed by hand."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from ctscreen.evaluation.classification import (
    auc,
    bootstrap_auc_ci,
    breakdown,
    operating_point,
    roc,
    screening_report,
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


def test_threshold_reaches_target_sensitivity_in_the_middle_of_its_gap():
    assert threshold_for_sensitivity(LABELS, SCORES, 0.5) == pytest.approx((0.8 + 0.4) / 2)
    assert threshold_for_sensitivity(LABELS, SCORES, 1.0) == pytest.approx((0.35 + 0.1) / 2)
    assert threshold_for_sensitivity([1, 0], [0.2, 0.9], 1.0) == 0.2  # nothing scores below the positive
    labels = np.r_[np.ones(40), np.zeros(60)].astype(int)
    scores = np.random.default_rng(0).random(100) + labels * 0.3
    for target in (0.8, 0.9, 0.95, 0.975):
        threshold = threshold_for_sensitivity(labels, scores, target)
        point = operating_point(labels, scores, threshold)
        assert point.sensitivity >= target
        caught, below = scores[scores >= threshold].min(), scores[scores < threshold].max()
        assert threshold == pytest.approx((caught + below) / 2)  # halfway across the gap
        # the most specific such threshold: the next score up misses the target
        assert operating_point(labels, scores, np.nextafter(caught, 2)).sensitivity < target
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


def pairwise_bootstrap_auc_ci(labels, scores, n_resamples, confidence=0.95, seed=0):
    """The former implementation, kept as the reference: every (positive, negative) pair of every
    resample compared, (resamples x positives x negatives) booleans, so small inputs only."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    rng = np.random.default_rng(seed)
    pos = positives[rng.integers(0, positives.size, (n_resamples, positives.size))]
    neg = negatives[rng.integers(0, negatives.size, (n_resamples, negatives.size))]
    greater = (pos[:, :, None] > neg[:, None, :]).mean(axis=(1, 2))
    ties = (pos[:, :, None] == neg[:, None, :]).mean(axis=(1, 2))
    samples = greater + 0.5 * ties
    tail = (1 - confidence) / 2
    return float(np.quantile(samples, tail)), float(np.quantile(samples, 1 - tail))


def _random_case(seed, cases, levels):
    """Random labels (both classes present) and scores on ``levels`` values, so ties are common."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, cases)
    labels[:2] = [0, 1]
    scores = rng.integers(0, levels, cases) / max(levels - 1, 1) if levels else rng.random(cases)
    return labels, scores


# labels, scores, n_resamples, confidence, seed: resample counts below, at and across chunks of 64
TEST_CASE_TIES = [*_random_case(1, 30, 4), 200, 0.95, 0]
TEST_CASE_FEW_LEVELS = [*_random_case(2, 57, 2), 130, 0.9, 7]
TEST_CASE_ALL_TIED = [[0, 1, 0, 1, 1], [0.5] * 5, 50, 0.95, 3]
TEST_CASE_NO_TIES = [*_random_case(3, 80, 0), 64, 0.95, 11]
TEST_CASE_ONE_POSITIVE = [[0, 0, 0, 1], [0.2, 0.6, 0.6, 0.6], 65, 0.8, 5]
TEST_CASE_HAND = [LABELS, SCORES, 300, 0.95, 2]
TEST_CASE_ONE_RESAMPLE = [*_random_case(4, 20, 5), 1, 0.95, 0]


@pytest.mark.parametrize(
    "labels, scores, n_resamples, confidence, seed",
    [TEST_CASE_TIES, TEST_CASE_FEW_LEVELS, TEST_CASE_ALL_TIED, TEST_CASE_NO_TIES, TEST_CASE_ONE_POSITIVE,
     TEST_CASE_HAND, TEST_CASE_ONE_RESAMPLE],
)
def test_bootstrap_ci_equals_pairwise_formula(labels, scores, n_resamples, confidence, seed):
    # the same draws, so the same interval up to rounding (one division instead of two means)
    expected = pairwise_bootstrap_auc_ci(labels, scores, n_resamples, confidence, seed)
    got = bootstrap_auc_ci(labels, scores, n_resamples, confidence, seed)
    assert got == pytest.approx(expected, rel=0, abs=1e-12)


def test_bootstrap_ci_without_a_class_and_bad_resamples():
    assert bootstrap_auc_ci([1, 1], [0.2, 0.3]) is None
    assert bootstrap_auc_ci([0, 0], [0.2, 0.3]) is None
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_auc_ci(LABELS, SCORES, n_resamples=0)


def test_bootstrap_ci_memory_does_not_grow_with_pairs():
    # 20,000 x 20,000 pairs x 200 resamples would be 80 GB of booleans the pairwise way
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(20_000), np.zeros(20_000)].astype(int)
    scores = np.round(rng.normal(labels * 0.5, 1.0), 2)  # rounded: ties
    tracemalloc.start()
    try:
        low, high = bootstrap_auc_ci(labels, scores, n_resamples=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"peak traced memory {peak / 2**20:.0f} MiB"
    assert low < auc(labels, scores) < high
    assert high - low < 0.02


def test_screening_report_includes_calibration():
    labels = [0, 0, 1, 1, 1, 0]
    scores = [0.1, 0.3, 0.35, 0.8, 1.0, 0.9]
    sites = ["a", "a", "b", "b", "a", "b"]
    subtypes = ["normal", "pneumonia", "covid", "covid", "covid", "pneumonia"]
    report = screening_report(labels, scores, 0.35, sites, subtypes, bootstrap_resamples=100)
    json.dumps(report)  # written as evaluation.json
    # the six-case example of test_calibration: Brier 1.3725 / 6, ECE 1.55 / 6, four non-empty bins
    assert report["calibration"]["brier"] == pytest.approx(1.3725 / 6)
    assert report["calibration"]["ece"] == pytest.approx(1.55 / 6)
    assert [b["count"] for b in report["calibration"]["bins"]] == [1, 2, 1, 2]
    # everything else is still there
    assert {"cases", "auc", "auc_ci95", "sensitivity", "specificity"} <= set(report) and "threshold" not in report
    assert report["cases"] == 6 and (report["tp"], report["fn"], report["fp"], report["tn"]) == (3, 0, 1, 2)
    assert set(report["by_site"]) == {"a", "b"}
    assert report["false_positives_by_negative_subtype"] == {"normal": 0, "pneumonia": 1}


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
