"""Kubeflow Pipelines v2 components of the retrain pipeline: one typed step each, thin wrappers over
``ctscreen``. On a cluster they run in the ctscreen image (``IMAGE``); locally, ``kfp.local`` runs them
in this interpreter."""

import json
from dataclasses import replace

IMAGE = "ghcr.io/ctscreen/ctscreen:latest"


def training_config(config: str, lungs):
    """The training configuration passed by value, finding the lungs with the run's lung-region model
    (``train_lungs``'s output) where that was adopted, else with the classical extraction."""
    from ctscreen.training.config import TrainingConfig, from_settings

    settings = from_settings(TrainingConfig, json.loads(config))
    return replace(settings, lung_model=f"{lungs.path}/lungs" if lungs.metadata.get("adopted") else None)


def record_metrics(artifact, values: dict) -> None:
    """Logs ``values`` on a Metrics artifact and writes them to its file too: ``kfp.local`` treats an
    output whose file is missing as a cache miss, so a step with metrics only the metadata holds
    would never be reused."""
    for name, value in values.items():
        artifact.log_metric(name, value)
    with open(artifact.path, "w") as fh:
        json.dump(values, fh, indent=1, sort_keys=True)
