"""Kubeflow Pipelines v2 components of the retrain pipeline: one typed step each, thin wrappers over
``ctscreen``. On a cluster they run in the ctscreen image (``IMAGE``); locally, ``kfp.local`` runs them
in this interpreter."""

IMAGE = "ghcr.io/ctscreen/ctscreen:latest"
