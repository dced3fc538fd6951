"""Calibration: whether a screening score read as a probability means what it says.

AUC only asks whether COVID-19 cases score higher than the others; a model can rank perfectly and
still say 0.9 for cases of which half are positive. A probability shown to a physician must mean
what it says: of the cases shown 0.8, about 8 in 10 should be positive. These figures say how far
the scores are from that: the Brier score (mean squared error of probability against the 0/1
label), the expected calibration error (ECE) and the reliability bins behind both.
"""

from __future__ import annotations

import numpy as np

from ctscreen.evaluation.classification import as_label_score_arrays


def _probabilities(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores as ``as_label_score_arrays`` checks them, and scores that are probabilities."""
    labels, scores = as_label_score_arrays(labels, scores)
    if labels.size == 0:
        raise ValueError("calibration needs at least one case")
    outside = ~((scores >= 0) & (scores <= 1))  # NaN counts as outside
    if outside.any():
        raise ValueError(f"scores must be probabilities in [0, 1]: {int(outside.sum())} are not "
                         f"(e.g. {scores[outside][0]!r})")
    return labels, scores


def _bin_index(scores: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each score: [k/bins, (k+1)/bins), the last bin closed so that 1.0 falls in it."""
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive integer, not {bins!r}")
    edges = np.arange(bins + 1) / bins  # k / bins: the same double as a score written as k / bins
    return np.minimum(np.searchsorted(edges, scores, side="right") - 1, bins - 1)


def brier_score(labels, scores) -> float:
    """Mean squared difference of probability and 0/1 label: 0 is perfect, 1 is confidently wrong on every case.
    It mixes calibration with discrimination, so it is read alongside the AUC and the ECE."""
    labels, scores = _probabilities(labels, scores)
    return float(np.mean((scores - labels) ** 2))


def reliability_bins(labels, scores, bins: int = 10) -> list[dict]:
    """Per non-empty equal-width bin: edges, case count, mean predicted probability and observed
    positive fraction; on a calibrated model the last two agree."""
    labels, scores = _probabilities(labels, scores)
    index = _bin_index(scores, bins)
    result = []
    for k in np.unique(index):
        member = index == k
        result.append({
            "lower": float(k / bins),
            "upper": float((k + 1) / bins),
            "count": int(member.sum()),
            "mean_predicted": float(scores[member].mean()),
            "observed_fraction": float(labels[member].mean()),
        })
    return result


def _ece(reliability: list[dict]) -> float:
    total = sum(b["count"] for b in reliability)
    return float(sum(b["count"] / total * abs(b["observed_fraction"] - b["mean_predicted"]) for b in reliability))


def expected_calibration_error(labels, scores, bins: int = 10) -> float:
    """Sum over bins of n_b / N * |observed positive fraction - mean predicted probability|: how far,
    on average over cases, the stated probability is from the observed frequency."""
    return _ece(reliability_bins(labels, scores, bins))


def calibration(labels, scores, bins: int = 10) -> dict:
    """Brier score, ECE and the reliability bins (``reliability_bins``) of one set, as plain JSON types."""
    reliability = reliability_bins(labels, scores, bins)
    return {"brier": brier_score(labels, scores), "ece": _ece(reliability), "bins": reliability}
