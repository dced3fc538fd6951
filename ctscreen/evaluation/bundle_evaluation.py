"""Evaluating a model bundle on a set of cases at its own threshold: how a release candidate is
measured on the frozen test set, and how a deployed model is checked on new data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ctscreen.evaluation.classification import screening_report
from ctscreen.evaluation.metrics import mean_lesion_dice
from ctscreen.evaluation.report import plot_roc_curves
from ctscreen.inference.bundle import ModelBundle
from ctscreen.inference.pair import classifier_input, covid_scores, lesion_mask
from ctscreen.inference.sliding_window import lesion_probability
from ctscreen.training.cases import prepare_cases


def evaluate_bundle(bundle: ModelBundle, manifest: str | Path, out_dir: str | Path, cache_dir: str | Path | None = None,
                    case_ids: set[str] | None = None, backend: str = "torch", bootstrap_resamples: int = 2000,
                    progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    cases = prepare_cases(manifest, cache_dir or out_dir / "cache", bundle.preprocessing, case_ids, progress=progress)
    if not cases:
        raise ValueError(f"no cases to evaluate in {manifest}" + (" for the chosen split" if case_ids is not None else ""))
    segmenter, classifier = bundle.predictors(backend)
    patch, size = tuple(bundle.segmentation["patch_zyx"]), tuple(bundle.classification["input_zyx"])
    maps = [lesion_probability(segmenter, c.image, patch) for c in tqdm(cases, desc="segment", unit="case", disable=not progress)]
    inputs = torch.stack([classifier_input(c.image, m, c.lung_mask, size) for c, m in zip(cases, maps)])
    scores = covid_scores(classifier, inputs)
    labels = [c.label for c in cases]
    report = screening_report(labels, scores, bundle.threshold, [c.site for c in cases], [c.subtype for c in cases], bootstrap_resamples)
    report["lesion_dice"] = mean_lesion_dice([lesion_mask(m, c.lung_mask) for c, m in zip(cases, maps)], [c.lesion_mask for c in cases])
    report["threshold"] = bundle.threshold
    report["model"] = {"name": bundle.name, "path": str(bundle.root), "backend": backend}
    report["scores"] = {c.case_id: round(float(s), 6) for c, s in zip(cases, scores)}
    out_dir.mkdir(parents=True, exist_ok=True)
    report["roc_png"] = str(plot_roc_curves({bundle.name: (np.array(labels), scores)}, out_dir / "roc.png", f"{bundle.name} on {len(cases)} cases"))
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    return report
