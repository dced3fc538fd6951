"""The one evaluator: every figure a pair is judged by — training's comparison of the pairs, the
retrain pipeline's evaluate step, the release gate and ``ctscreen evaluate`` — is computed here, so
the figures registered for a model are the figures its gate decided on.

Two steps, because one segmenter serves several classifiers: ``segment`` runs the segmenter over the
cases once, case by case, and keeps what the classifiers and the figures need (each case's
classifier input on disk, its lesion Dice); ``figures`` scores a classifier on them and reports.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from ctscreen.evaluation.classification import screening_report
from ctscreen.evaluation.metrics import dice
from ctscreen.inference.pair import classifier_input, covid_scores, lesion_mask
from ctscreen.inference.sliding_window import lesion_probability
from ctscreen.training.cases import CachedCase

INDEX = "segmented.json"


@dataclass(frozen=True)
class SegmentedCases:
    """What a segmenter made of a set of cases: per case its identity, label, site and subtype, its
    lesion Dice (None where it has no annotated lesion), and its classifier input in ``root/inputs``
    (read when needed, so memory does not grow with the case count)."""

    root: Path
    records: tuple[dict, ...]

    @classmethod
    def open(cls, root: str | Path) -> "SegmentedCases":
        root = Path(root)
        return cls(root, tuple(json.loads((root / INDEX).read_text())["cases"]))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def case_ids(self) -> list[str]:
        return [r["case_id"] for r in self.records]

    @property
    def labels(self) -> np.ndarray:
        return np.array([r["label"] for r in self.records], dtype=int)

    def input(self, index: int) -> torch.Tensor:
        """The classifier input (2, D, H, W) of the ``index``-th case."""
        return torch.from_numpy(np.load(self.root / "inputs" / f"{self.records[index]['case_id']}.npy"))

    def inputs(self, indices) -> torch.Tensor:
        return torch.stack([self.input(int(i)) for i in indices])

    def select(self, case_ids: Iterable[str]) -> "SegmentedCases":
        """The cases of ``case_ids``, in the order this set holds them."""
        wanted = set(case_ids)
        return SegmentedCases(self.root, tuple(r for r in self.records if r["case_id"] in wanted))


def segment(segmenter, cases: Iterable[CachedCase], patch_zyx: tuple[int, int, int], input_zyx: tuple[int, int, int],
            out_dir: str | Path, progress: bool = True, description: str = "segment") -> SegmentedCases:
    """Lesion probability by sliding window over each case, the lesion rule against its annotation,
    and the classifier's two-channel input, written to ``out_dir`` (replacing what was there)."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "inputs").mkdir(parents=True)
    records = []
    for cached in tqdm(cases, desc=description, unit="case", disable=not progress):
        case = cached.load()
        probability = lesion_probability(segmenter, case.image, patch_zyx)
        annotated = bool(case.lesion_mask.any())
        records.append({"case_id": case.case_id, "label": case.label, "site": case.site, "subtype": case.subtype,
                        "lesion_dice": dice(lesion_mask(probability, case.lung_mask), case.lesion_mask) if annotated else None})
        np.save(out_dir / "inputs" / f"{case.case_id}.npy", classifier_input(case.image, probability, case.lung_mask, input_zyx).numpy())
    (out_dir / INDEX).write_text(json.dumps({"cases": records}))
    return SegmentedCases(out_dir, tuple(records))


def scores(classifier, segmented: SegmentedCases, batch: int = 8) -> np.ndarray:
    """COVID-19 probabilities of every case, ``batch`` inputs in memory at a time."""
    chunks = [covid_scores(classifier, segmented.inputs(range(start, min(start + batch, len(segmented)))), batch)
              for start in range(0, len(segmented), batch)]
    return np.concatenate(chunks) if chunks else np.zeros(0)


def figures(segmented: SegmentedCases, case_scores: np.ndarray, threshold: float, bootstrap_resamples: int = 2000) -> dict:
    """The screening report at ``threshold`` (discrimination, operating point, calibration, per site
    and subtype), the mean lesion Dice over annotated cases, and every case's score."""
    records = segmented.records
    report = screening_report(segmented.labels, case_scores, threshold, [r["site"] for r in records], [r["subtype"] for r in records],
                              bootstrap_resamples)
    annotated = [r for r in records if r["lesion_dice"] is not None]
    report["lesion_dice"] = float(np.mean([r["lesion_dice"] for r in annotated])) if annotated else None
    # per subtype, since one mean hides which lesions the segmenter misses (a calcified granuloma is a few voxels)
    report["lesion_dice_by_subtype"] = {subtype: float(np.mean([r["lesion_dice"] for r in annotated if r["subtype"] == subtype]))
                                        for subtype in sorted({r["subtype"] for r in annotated})}
    report["threshold"] = float(threshold)
    report["scores"] = {r["case_id"]: round(float(s), 6) for r, s in zip(records, case_scores)}
    return report


def headline(report: dict) -> dict[str, float]:
    """The figures a report is compared and logged by (those it has): what MLflow, the pipeline's
    metrics and the registry's tags show of it."""
    values = {k: report.get(k) for k in ("auc", "sensitivity", "specificity", "lesion_dice")}
    values.update({k: (report.get("calibration") or {}).get(k) for k in ("brier", "ece")})
    return {k: float(v) for k, v in values.items() if v is not None}
