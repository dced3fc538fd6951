"""Evaluating a model bundle on a set of cases at its own threshold: how a release candidate is
measured on the frozen test set, and how a deployed model is checked on new data (through the one
evaluator, as training and the pipeline measure it)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ctscreen.evaluation.evaluator import figures, scores, segment
from ctscreen.evaluation.report import plot_reliability_diagram, plot_roc_curves
from ctscreen.inference.bundle import ModelBundle
from ctscreen.training.cases import prepare_cases


def evaluate_bundle(bundle: ModelBundle, manifest: str | Path, out_dir: str | Path, cache_dir: str | Path | None = None,
                    case_ids: set[str] | None = None, backend: str = "torch", bootstrap_resamples: int = 2000,
                    progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    cases = prepare_cases(manifest, cache_dir or out_dir / "cache", bundle.preprocessing, case_ids, progress=progress,
                          lung_region=bundle.lung_region())
    if not cases:
        raise ValueError(f"no cases to evaluate in {manifest}" + (" for the chosen split" if case_ids is not None else ""))
    segmenter, classifier = bundle.predictors(backend)
    with tempfile.TemporaryDirectory() as scratch:
        segmented = segment(segmenter, cases, tuple(bundle.segmentation["patch_zyx"]), tuple(bundle.classification["input_zyx"]),
                            scratch, progress)
        case_scores = scores(classifier, segmented)
        report = figures(segmented, case_scores, bundle.threshold, bootstrap_resamples)
    report["model"] = {"name": bundle.name, "path": str(bundle.root), "backend": backend}
    out_dir.mkdir(parents=True, exist_ok=True)
    report["roc_png"] = str(plot_roc_curves({bundle.name: (segmented.labels, case_scores)}, out_dir / "roc.png",
                                            f"{bundle.name} on {len(cases)} cases"))
    report["reliability_png"] = str(plot_reliability_diagram(report["calibration"], out_dir / "reliability.png",
                                                             f"{bundle.name} on {len(cases)} cases"))
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    return report
