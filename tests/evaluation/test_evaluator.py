"""The evaluator's report of a scored set: lesion Dice over the annotated cases, and per subtype."""

import numpy as np
import pytest

from ctscreen.evaluation.evaluator import SegmentedCases, figures


def test_lesion_dice_is_the_mean_over_annotated_cases_and_is_broken_down_by_subtype(tmp_path):
    cases = [("a", 1, "covid", 0.8), ("b", 1, "covid", 0.6), ("c", 0, "tumour", 0.3), ("d", 0, "old-lesion", 0.0),
             ("e", 0, "healthy", None), ("f", 1, "covid", 0.7)]
    segmented = SegmentedCases(tmp_path, tuple({"case_id": c, "label": label, "site": "s", "subtype": subtype, "lesion_dice": d}
                                               for c, label, subtype, d in cases))
    report = figures(segmented, np.array([0.9, 0.8, 0.4, 0.2, 0.1, 0.7]), threshold=0.5, bootstrap_resamples=50)
    assert report["lesion_dice"] == pytest.approx((0.8 + 0.6 + 0.3 + 0.0 + 0.7) / 5)
    assert report["lesion_dice_by_subtype"] == pytest.approx({"covid": 0.7, "old-lesion": 0.0, "tumour": 0.3})
    assert (report["sensitivity"], report["specificity"]) == (1.0, 1.0)
