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
def scoped_environment(**values: str):
    """Environment variables set for a while; processes started meanwhile (pipeline steps) inherit them."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def home_at(path: str | Path):
    """``$CTSCREEN_HOME`` set to ``path`` for a while."""
    with scoped_environment(**{HOME_ENV: str(Path(path).resolve())}):
        yield home()


def dataset_dir() -> Path:
    return home() / "dataset"


def dvc_remote() -> Path:
    return home() / "dvc-remote"


def artifact_root() -> Path:
    return home() / "mlartifacts"


def keys_dir() -> Path:
    """Private keys of the place where releases are made: the bundle-signing key, the release store's role keys."""
    return home() / "keys"


def bundle_signing_key() -> Path:
    return keys_dir() / "bundle-signing.key"


def release_keys_dir() -> Path:
    return keys_dir() / "release"


def release_store() -> Path:
    """The release store central serves to edge nodes (a TUF repository)."""
    return home() / "release-store"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set (an MLflow server), else SQLite under the home."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(home() / 'mlflow.db').resolve()}"
