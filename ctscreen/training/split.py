"""Train / validation / test split by patient, stratified by label and site.

A patient's studies never straddle two sets (that would leak the patient's anatomy into the test
figures). Within each label, patients are ordered by site (shuffled within a site) and dealt to the
sets in a repeating pattern that follows the fractions — systematic sampling — so every set gets
both labels and a share of every site even when a site has only a few patients, where rounding per
(site, label) stratum would leave validation or test empty. A site can be held out entirely, to
measure how a model does at a hospital it never saw.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

SETS = ("train", "validation", "test")
FRACTIONS = (0.6, 0.2, 0.2)  # train, validation, test


def _pattern(fractions: tuple[float, ...], length: int = 20) -> list[str]:
    """Set names in an order whose every prefix is as close to ``fractions`` as whole counts allow."""
    counts = np.zeros(len(fractions))
    pattern = []
    for step in range(1, length + 1):
        index = int(np.argmax(np.asarray(fractions) * step - counts))
        counts[index] += 1
        pattern.append(SETS[index])
    return pattern


def check_fractions(fractions: tuple[float, ...]) -> tuple[float, float, float]:
    """Training and validation need cases of their own; a test share may be zero."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0 or min(fractions[:2]) <= 0:
        raise ValueError("split fractions must be three (train, validation, test) that sum to 1, train and validation above 0 "
                         f"and test not below; got {tuple(fractions)}")
    return tuple(float(f) for f in fractions)


def split_by_patient(rows: list[dict], fractions: tuple[float, float, float] = FRACTIONS, seed: int = 0,
                     held_out_site: str | None = None) -> dict[str, str]:
    """case_id -> set name; a held-out site's cases all go to ``test-<site>``."""
    fractions = check_fractions(fractions)
    sites = sorted({row["site"] for row in rows})
    if held_out_site is not None and held_out_site not in sites:
        raise ValueError(f"held-out site {held_out_site!r} has no case in the manifest; its sites: {', '.join(sites)}")
    assignment: dict[str, str] = {}
    cases_of: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if held_out_site is not None and row["site"] == held_out_site:
            assignment[row["case_id"]] = f"test-{held_out_site}"
        else:
            cases_of[row.get("patient_id") or row["case_id"]].append(row)
    by_label: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for patient, cases in cases_of.items():
        by_label[cases[0]["label"]][cases[0]["site"]].append(patient)  # a patient's first study decides
    rng = np.random.default_rng(seed)
    pattern = _pattern(fractions)
    for label in sorted(by_label):
        ordered = []
        for site in sorted(by_label[label]):
            patients = sorted(by_label[label][site])
            rng.shuffle(patients)
            ordered.extend(patients)
        offset = int(rng.integers(len(pattern)))
        for position, patient in enumerate(ordered):
            for row in cases_of[patient]:
                assignment[row["case_id"]] = pattern[(offset + position) % len(pattern)]
    return assignment


def extend_split(assignment: dict[str, str], rows: list[dict], seed: int = 0, fractions: tuple[float, float, float] = FRACTIONS) -> dict[str, str]:
    """``assignment`` with the new cases of ``rows`` added, the test set frozen.

    Retraining stages are comparable only on one test set, so the first cases are split three ways
    by ``fractions``, and from then on cases already placed keep their set and new patients go to
    training and validation (in the fractions' proportion of the two). A new study of a
    patient already placed joins that patient's set — except a test patient's, which is ``excluded``:
    it may neither change the test set nor leak the patient into training.
    """
    extended = dict(assignment)
    set_of_patient = {}
    placed = {row["case_id"]: row for row in rows if row["case_id"] in assignment}
    for case_id, row in placed.items():
        set_of_patient[row.get("patient_id") or case_id] = assignment[case_id]
    new = []
    for row in rows:
        if row["case_id"] in assignment:
            continue
        known = set_of_patient.get(row.get("patient_id") or row["case_id"])
        if known is None:
            new.append(row)
        else:
            extended[row["case_id"]] = "excluded" if known.startswith("test") else known
    if new:
        train, validation, _ = check_fractions(fractions)
        frozen = any(name == "test" for name in assignment.values())
        later = (train / (train + validation), validation / (train + validation), 0.0)
        extended.update(split_by_patient(new, fractions=later if frozen else fractions, seed=seed + len(assignment)))
    return extended
