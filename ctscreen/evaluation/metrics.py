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
