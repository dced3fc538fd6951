"""Retraining stages on the synthetic source, as the paper's system lived them: confirmed cases arrive
in batches, the pipeline runs after each, and the learning curve shows what more data bought (the
paper: AUC 0.931 with 226 training cases, 0.991 with 1,136).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import numpy as np

from ctscreen.dataset.synthetic import synthetic_intake
from ctscreen.evaluation.report import plot_learning_curve, plot_roc_curves
from ctscreen.home import home
from ctscreen.registry.models import CHAMPION, ModelRegistry
from ctscreen.registry.tracking import stage_history
from ctscreen.training.split import FRACTIONS
from pipelines.runner import run_local


def stage_sizes(stages: int, first: int, growth: float) -> list[int]:
    """New cases per stage: ``first``, then each batch ``growth`` times the last."""
    if stages < 1 or first < 1 or growth <= 0:
        raise ValueError(f"stages and first must be at least 1 and growth positive, got {stages}, {first}, {growth}")
    return [max(1, round(first * growth**i)) for i in range(stages)]


def simulate(out: str | Path, stages: int, first: int, growth: float, dataset: str | Path, tracking_uri: str, sites: int = 3, seed: int = 0,
             profile: str = "small", overrides: list[str] = (), gate_overrides: list[str] = (), params: str | Path | None = None,
             segmentation_models: list[str] | None = None, classification_models: list[str] | None = None,
             experiment: str = "ctscreen-retrain", lung_overrides: list[str] = (), split_fractions: tuple[float, float, float] = FRACTIONS) -> dict:
    """Feeds the synthetic source in ``stages`` batches, runs the pipeline after each, and draws the
    learning curve (AUC with CI per stage) and the ROC curves per stage (Figure 2b) from MLflow.
    ``split_fractions`` split the first batch of a new dataset, and so size the frozen test set
    every stage is measured on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    offset, runs = 0, []
    for stage, size in enumerate(stage_sizes(stages, first, growth), start=1):
        intake = synthetic_intake(out / f"intake-stage-{stage}", size, key, sites, seed, profile, first=offset).parent
        offset += size
        runs.append(run_local(intake, dataset, tracking_uri, params, overrides, gate_overrides, segmentation_models,
                              classification_models, seed, lung_overrides=lung_overrides, split_fractions=split_fractions)
                    | {"stage": stage, "new_cases": size})
    return summarise_stages(out, tracking_uri, runs, experiment)


def summarise_stages(out: str | Path, tracking_uri: str, runs: list[dict], experiment: str = "ctscreen-retrain") -> dict:
    """The last ``len(runs)`` pipeline runs (``run_local``'s results) as stages from MLflow's history:
    ``stages.json``, the learning curve and the ROC curves per stage, each stage marked with its
    registered version, the gate's decision and whether it holds the champion now."""
    out = Path(out)
    champion = ModelRegistry(tracking_uri).alias(CHAMPION)
    history = stage_history(tracking_uri, experiment)[-len(runs):]
    for record, run in zip(history, runs):
        record.update({"version": run["version"], "champion": champion is not None and run["version"] == champion.version,
                       "seconds": run["seconds"], "new_cases": run.get("new_cases")})
    curve = plot_learning_curve(history, out / "learning_curve.png")
    roc = plot_roc_curves({f"stage {r['stage']} ({r['train_cases']} training cases)": (np.array(r["test"]["labels"]), np.array(r["test"]["scores"]))
                           for r in history if r["test"]}, out / "figure2b_roc_per_stage.png", "Winner per retraining stage, frozen test set")
    summary = {"stages": [{k: v for k, v in r.items() if k != "test"} for r in history], "champion": champion.version if champion else None,
               "learning_curve": str(curve), "roc_per_stage": str(roc), "home": str(home())}
    (out / "stages.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
