"""Train / validation / test split by patient, stratified by site and label.

A patient's studies never straddle two sets (that would leak the patient's anatomy into the test
figures); within each (site, label) stratum patients are dealt to the sets in proportion. A site
can be held out entirely, to measure how a model does at a hospital it never saw.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

SETS = ("train", "validation", "test")


def split_by_patient(rows: list[dict], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0,
                     held_out_site: str | None = None) -> dict[str, str]:
    """case_id -> set name; a held-out site's cases all go to ``test-<site>``."""
    if abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    assignment: dict[str, str] = {}
    cases_of: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if held_out_site is not None and row["site"] == held_out_site:
            assignment[row["case_id"]] = f"test-{held_out_site}"
        else:
            cases_of[row.get("patient_id") or row["case_id"]].append(row)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for patient, cases in cases_of.items():
        strata[(cases[0]["site"], cases[0]["label"])].append(patient)  # a patient's first study decides
    rng = np.random.default_rng(seed)
    for stratum in sorted(strata):
        patients = sorted(strata[stratum])
        rng.shuffle(patients)
        bounds = np.round(np.cumsum(fractions)[:-1] * len(patients)).astype(int)
        for name, members in zip(SETS, np.split(np.array(patients, dtype=object), bounds)):
            for patient in members:
                for row in cases_of[patient]:
                    assignment[row["case_id"]] = name
    return assignment
