"""The platform's current default model: the registry's champion once a registry exists, else the
winner of the last ``make demo``."""

from __future__ import annotations

import os

from ctscreen.home import home, tracking_uri
from ctscreen.inference.bundle import ModelBundle, default_bundle, load_bundle


def current_default_bundle() -> ModelBundle:
    if "MLFLOW_TRACKING_URI" not in os.environ and not (home() / "mlflow.db").exists():
        return default_bundle()  # no registry yet: merely screening must not create one
    from ctscreen.registry.models import CHAMPION, ModelRegistry  # MLflow takes seconds to import: only when needed

    registry = ModelRegistry(tracking_uri())
    champion = registry.alias(CHAMPION)
    if champion is None:
        return default_bundle()
    local = home() / "champion" / f"v{champion.version}"
    if (local / "bundle" / "bundle.json").exists():
        return load_bundle(local / "bundle")
    return registry.download(champion.version, local)
