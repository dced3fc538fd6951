"""Overlap metrics on binary masks."""

from __future__ import annotations

import numpy as np


def dice(prediction: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> float:
    """Dice coefficient of two binary masks; ``empty`` when both are empty (nothing to find, nothing found)."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return empty
    return 2.0 * int((prediction & truth).sum()) / total


def mean_lesion_dice(predictions, truths) -> float | None:
    """Mean Dice over the cases that have annotated lesions (healthy cases have nothing to overlap)."""
    scores = [dice(p, t) for p, t in zip(predictions, truths) if np.any(t)]
    return float(np.mean(scores)) if scores else None
