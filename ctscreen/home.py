"""Where the embedded platform keeps its state on one machine: ``$CTSCREEN_HOME`` (default
``~/.ctscreen``) holds the dataset repository, its DVC remote, the MLflow database and artifacts,
and the pointer to the default model. Each can be pointed elsewhere (a shared DVC remote, an MLflow
server) without changing the code that uses it."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

HOME_ENV = "CTSCREEN_HOME"


def home() -> Path:
    return Path(os.environ.get(HOME_ENV, Path.home() / ".ctscreen"))


@contextmanager
def home_at(path: str | Path):
    """``$CTSCREEN_HOME`` set to ``path`` for a while; the pipeline steps ``kfp.local`` starts inherit it."""
    before = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(Path(path).resolve())
    try:
        yield Path(os.environ[HOME_ENV])
    finally:
        if before is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = before


def dataset_dir() -> Path:
    return home() / "dataset"


def dvc_remote() -> Path:
    return home() / "dvc-remote"


def artifact_root() -> Path:
    return home() / "mlartifacts"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set (an MLflow server), else SQLite under the home."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(home() / 'mlflow.db').resolve()}"
