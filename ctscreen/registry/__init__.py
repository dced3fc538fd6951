"""Tracking and the model registry in MLflow: retraining runs, registered bundles and their aliases."""
