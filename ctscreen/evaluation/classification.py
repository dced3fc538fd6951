"""Screening metrics: ROC, AUC with a bootstrap confidence interval, and operating points.

The operating threshold is chosen on validation data (the threshold that reaches a target
sensitivity) and then applied unchanged to test data, so test figures are not tuned on the test set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    sensitivity: float | None  # None when there is no positive case to find
    specificity: float | None  # None when there is no negative case
    tp: int
    fp: int
    tn: int
    fn: int

    def to_dict(self) -> dict:
        return asdict(self)


def as_label_score_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 0/1 ints and scores as floats, both 1D and of one length; a ValueError otherwise."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be 1D and of one length")
    if not set(np.unique(labels)) <= {0, 1}:
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    return labels, scores


def auc(labels, scores) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    labels, scores = as_label_score_arrays(labels, scores)
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def roc(labels, scores) -> dict:
    labels, scores = as_label_score_arrays(labels, scores)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.minimum(thresholds, 1e300).tolist()}


_BOOTSTRAP_CHUNK = 64  # resamples ranked at once: memory is O(chunk x cases), never positives x negatives


def _resample_aucs(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of each row (one resample) by the Mann-Whitney statistic: U = rank sum of the positives minus
    P(P+1)/2, mid-ranks for ties, AUC = U / (P N) = P(pos > neg) + 0.5 P(pos == neg)."""
    p, n = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # average (mid-)ranks per row
    return (ranks[:, :p].sum(axis=1) - p * (p + 1) / 2) / (p * n)


def bootstrap_auc_ci(labels, scores, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the AUC, resampling positives and negatives separately (stratified).

    The draws are those of ``rng.integers(0, n, (n_resamples, n))``, positives first then negatives, from
    ``np.random.default_rng(seed)``; they are taken a chunk of resamples at a time (numpy's bounded draws
    carry no buffer across calls, so chunked draws continue the same stream), the negatives from a second
    generator advanced past all positive draws. Memory stays O(chunk x (positives + negatives)).
    """
    labels, scores = as_label_score_arrays(labels, scores)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if positives.size == 0 or negatives.size == 0:
        return None
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}")
    chunks = [min(_BOOTSTRAP_CHUNK, n_resamples - start) for start in range(0, n_resamples, _BOOTSTRAP_CHUNK)]
    pos_rng, neg_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    for size in chunks:  # the negatives' draws start where all positive draws end
        neg_rng.integers(0, positives.size, (size, positives.size))
    samples = np.concatenate([
        _resample_aucs(positives[pos_rng.integers(0, positives.size, (size, positives.size))],
                       negatives[neg_rng.integers(0, negatives.size, (size, negatives.size))])
        for size in chunks
    ])
    tail = (1 - confidence) / 2
    return float(np.quantile(samples, tail)), float(np.quantile(samples, 1 - tail))


def threshold_for_sensitivity(labels, scores, target: float) -> float:
    """A threshold (score >= threshold is positive) whose sensitivity reaches ``target``: of all those
    with the highest specificity, the middle one, halfway between the last positive it must catch and
    the next score below. A threshold at that positive's own score misses a new case scoring a little
    under it, and on a small validation set that cost the held-out site a tenth of its sensitivity."""
    labels, scores = as_label_score_arrays(labels, scores)
    positives = np.sort(scores[labels == 1])[::-1]
    if positives.size == 0:
        raise ValueError("cannot choose a threshold for a target sensitivity without positive cases")
    caught = positives[max(int(np.ceil(target * positives.size)), 1) - 1]
    below = scores[scores < caught]
    return float((caught + below.max()) / 2) if below.size else float(caught)


def operating_point(labels, scores, threshold: float) -> OperatingPoint:
    labels, scores = as_label_score_arrays(labels, scores)
    predicted = scores >= threshold
    tp = int((predicted & (labels == 1)).sum())
    fn = int((~predicted & (labels == 1)).sum())
    tn = int((~predicted & (labels == 0)).sum())
    fp = int((predicted & (labels == 0)).sum())
    return OperatingPoint(
        threshold=float(threshold),
        sensitivity=tp / (tp + fn) if tp + fn else None,
        specificity=tn / (tn + fp) if tn + fp else None,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )


def breakdown(labels, scores, threshold: float, groups) -> dict[str, dict]:
    """Per group (site, negative subtype, ...): case count, AUC where both classes occur, operating point."""
    labels, scores = as_label_score_arrays(labels, scores)
    groups = np.asarray(groups).astype(str)
    result = {}
    for group in sorted(set(groups)):
        member = groups == group
        result[group] = {
            "cases": int(member.sum()),
            "auc": auc(labels[member], scores[member]),
            **operating_point(labels[member], scores[member], threshold).to_dict(),
        }
    return result


def screening_report(labels, scores, threshold: float, sites, subtypes, bootstrap_resamples: int = 2000) -> dict:
    """Everything a test set says about a screening model at its operating threshold."""
    from ctscreen.evaluation.calibration import calibration  # here: calibration.py imports this module

    labels, scores = as_label_score_arrays(labels, scores)
    subtypes = np.asarray(subtypes).astype(str)
    point = operating_point(labels, scores, threshold)
    negatives = labels == 0
    return {
        "cases": int(labels.size),
        "auc": auc(labels, scores),
        "auc_ci95": bootstrap_auc_ci(labels, scores, bootstrap_resamples),
        # do the scores mean what they say as probabilities (not only rank cases well)? None without cases
        "calibration": calibration(labels, scores) if labels.size else None,
        **{k: v for k, v in point.to_dict().items() if k != "threshold"},
        "by_site": breakdown(labels, scores, threshold, sites),
        "false_positives_by_negative_subtype": {
            subtype: int(((scores >= threshold) & negatives & (subtypes == subtype)).sum())
            for subtype in sorted(set(subtypes[negatives]))
        },
    }
