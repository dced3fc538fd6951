"""Calibration metrics against values computed by hand, and the reliability diagram."""

from __future__ import annotations

import numpy as np
import pytest

from ctscreen.evaluation.calibration import brier_score, calibration, expected_calibration_error, reliability_bins
from ctscreen.evaluation.report import plot_reliability_diagram

# Six cases, 10 bins of width 0.1 (the last, [0.9, 1.0], closed so that 1.0 falls in it):
#   label  score  (score - label)^2   bin
#     0    0.10        0.0100         [0.1, 0.2)
#     0    0.30        0.0900         [0.3, 0.4)   0.3 is a lower edge: it opens the bin
#     1    0.35        0.4225         [0.3, 0.4)
#     1    0.80        0.0400         [0.8, 0.9)
#     1    1.00        0.0000         [0.9, 1.0]   1.0 falls in the last bin
#     0    0.90        0.8100         [0.9, 1.0]
# Brier = 1.3725 / 6 = 0.22875
# bins: count, mean predicted, observed fraction, |observed - predicted|
#   [0.1, 0.2)  1  0.100  0/1 = 0.0  0.100
#   [0.3, 0.4)  2  0.325  1/2 = 0.5  0.175
#   [0.8, 0.9)  1  0.800  1/1 = 1.0  0.200
#   [0.9, 1.0]  2  0.950  1/2 = 0.5  0.450
# ECE = (1 * 0.1 + 2 * 0.175 + 1 * 0.2 + 2 * 0.45) / 6 = 1.55 / 6
SIX_LABELS = [0, 0, 1, 1, 1, 0]
SIX_SCORES = [0.1, 0.3, 0.35, 0.8, 1.0, 0.9]
SIX_BINS = [
    {"lower": 0.1, "upper": 0.2, "count": 1, "mean_predicted": 0.1, "observed_fraction": 0.0},
    {"lower": 0.3, "upper": 0.4, "count": 2, "mean_predicted": 0.325, "observed_fraction": 0.5},
    {"lower": 0.8, "upper": 0.9, "count": 1, "mean_predicted": 0.8, "observed_fraction": 1.0},
    {"lower": 0.9, "upper": 1.0, "count": 2, "mean_predicted": 0.95, "observed_fraction": 0.5},
]

# labels, scores, bins, expected Brier, expected ECE
TEST_CASE_SIX = [SIX_LABELS, SIX_SCORES, 10, 1.3725 / 6, 1.55 / 6]
# The same six in 2 bins: [0, 0.5) holds 0.1, 0.3, 0.35 (mean 0.25, 1 of 3 positive);
# [0.5, 1] holds 0.8, 1.0, 0.9 (mean 0.9, 2 of 3 positive). ECE = 3/6 * 1/12 + 3/6 * |2/3 - 0.9|
TEST_CASE_SIX_TWO_BINS = [SIX_LABELS, SIX_SCORES, 2, 1.3725 / 6, 0.5 * (1 / 12) + 0.5 * (0.9 - 2 / 3)]
# Perfectly calibrated: of the cases shown 0.25, 1 in 4 is positive; of those shown 0.75, 3 in 4.
# ECE 0; Brier = (0.75^2 + 3 * 0.25^2 + 3 * 0.25^2 + 0.75^2) / 8 = 1.5 / 8
TEST_CASE_CALIBRATED = [[1, 0, 0, 0, 1, 1, 1, 0], [0.25] * 4 + [0.75] * 4, 10, 0.1875, 0.0]
# Every case shown 0.5, half positive: calibrated (ECE 0) but uninformative, Brier 0.25
TEST_CASE_COIN = [[0, 1, 0, 1], [0.5] * 4, 10, 0.25, 0.0]
# Confident and right on every case: both 0
TEST_CASE_RIGHT = [[0, 1], [0.0, 1.0], 10, 0.0, 0.0]
# Confident and wrong on every case: each squared error is 1, so Brier 1; bin [0, 0.1) says 0 and
# holds positives only, bin [0.9, 1] says 1 and holds negatives only: ECE = 2/4 * 1 + 2/4 * 1 = 1
TEST_CASE_ALL_WRONG = [[1, 1, 0, 0], [0.0, 0.0, 1.0, 1.0], 10, 1.0, 1.0]


@pytest.mark.parametrize(
    "labels, scores, bins, brier, ece",
    [TEST_CASE_SIX, TEST_CASE_SIX_TWO_BINS, TEST_CASE_CALIBRATED, TEST_CASE_COIN, TEST_CASE_RIGHT, TEST_CASE_ALL_WRONG],
)
def test_calibration_by_hand(labels, scores, bins, brier, ece):
    assert brier_score(labels, scores) == pytest.approx(brier, abs=1e-12)
    assert expected_calibration_error(labels, scores, bins) == pytest.approx(ece, abs=1e-12)
    result = calibration(labels, scores, bins)
    assert result["brier"] == pytest.approx(brier, abs=1e-12)
    assert result["ece"] == pytest.approx(ece, abs=1e-12)
    assert sum(b["count"] for b in result["bins"]) == len(labels)
    assert all(isinstance(v, (int, float)) for b in result["bins"] for v in b.values())  # JSON-ready


def test_reliability_bins_by_hand():
    bins = calibration(SIX_LABELS, SIX_SCORES)["bins"]
    assert [set(b) for b in bins] == [set(b) for b in SIX_BINS]
    for got, expected in zip(bins, SIX_BINS, strict=True):
        assert got == pytest.approx(expected)
    assert reliability_bins(SIX_LABELS, SIX_SCORES) == bins


@pytest.mark.parametrize(
    "score, bins, lower, upper",
    [
        [1.0, 10, 0.9, 1.0],  # the bin of p = 1.0 is the last bin, not an eleventh
        [0.9, 10, 0.9, 1.0],
        [np.nextafter(0.9, 0), 10, 0.8, 0.9],
        [0.0, 10, 0.0, 0.1],
        [0.3, 10, 0.3, 0.4],  # a score written as k / bins opens bin k
        [0.7, 10, 0.7, 0.8],
        [0.5, 2, 0.5, 1.0],
        [1.0, 2, 0.5, 1.0],
        [1.0, 1, 0.0, 1.0],
        [0.0, 1, 0.0, 1.0],
        [1.0, 3, 2 / 3, 1.0],
    ],
)
def test_bin_edges(score, bins, lower, upper):
    (only,) = calibration([1], [score], bins)["bins"]
    assert (only["lower"], only["upper"], only["count"]) == (pytest.approx(lower), pytest.approx(upper), 1)


@pytest.mark.parametrize(
    "labels, scores, bins, message",
    [
        [[0, 1, 1], [0.1, 0.2], 10, "one length"],
        [[[0, 1]], [[0.1, 0.2]], 10, "1D"],
        [[0, 2], [0.1, 0.2], 10, "labels must be 0"],
        [[0, 1], [0.1, 1.2], 10, r"in \[0, 1\]"],
        [[0, 1], [-0.01, 0.5], 10, r"in \[0, 1\]"],
        [[0, 1], [np.nan, 0.5], 10, r"in \[0, 1\]"],
        [[], [], 10, "at least one case"],
        [[0, 1], [0.1, 0.2], 0, "bins must be a positive integer"],
        [[0, 1], [0.1, 0.2], 2.5, "bins must be a positive integer"],
    ],
)
def test_bad_input(labels, scores, bins, message):
    with pytest.raises(ValueError, match=message):
        calibration(labels, scores, bins)
    if bins == 10:
        with pytest.raises(ValueError, match=message):
            brier_score(labels, scores)
        with pytest.raises(ValueError, match=message):
            expected_calibration_error(labels, scores)


def test_reliability_diagram_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random(200)
    labels = (rng.random(200) < scores).astype(int)  # calibrated by construction
    path = plot_reliability_diagram(calibration(labels, scores), tmp_path / "plots" / "reliability.png", "test set")
    assert path == tmp_path / "plots" / "reliability.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
