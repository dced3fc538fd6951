"""Kubeflow Pipelines v2 components of the retrain pipeline: one typed step each, thin wrappers over
``ctscreen``. On a cluster they run in the ctscreen image (``IMAGE``); locally, ``kfp.local`` runs them
in this interpreter."""

import json

IMAGE = "ghcr.io/ctscreen/ctscreen:latest"


def record_metrics(artifact, values: dict) -> None:
    """Logs ``values`` on a Metrics artifact and writes them to its file too: ``kfp.local`` treats an
    output whose file is missing as a cache miss, so a step with metrics only the metadata holds
    would never be reused."""
    for name, value in values.items():
        artifact.log_metric(name, value)
    with open(artifact.path, "w") as fh:
        json.dump(values, fh, indent=1, sort_keys=True)
