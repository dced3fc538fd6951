"""``ctscreen release build``'s first half: the registered bundle named by ``MODEL@ALIAS`` or
``MODEL@VERSION`` (MLflow), with the facts a release carries about it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ctscreen.errors import CTScreenError
from ctscreen.inference.bundle import ModelBundle
from ctscreen.registry.models import MODEL_NAME, ModelRegistry, RegisteredVersion


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``ctscreen-screening@champion`` -> (name, "champion"); ``@7`` or ``7`` -> (the platform's model, "7")."""
    name, _, which = spec.rpartition("@") if "@" in spec else ("", "", spec)
    if not which:
        raise CTScreenError(f"--model {spec!r}: give MODEL@ALIAS (champion, challenger) or MODEL@VERSION")
    return name or MODEL_NAME, which


def registered_bundle(spec: str, tracking_uri: str, work_dir: str | Path | None = None) -> tuple[ModelBundle, dict]:
    """The bundle (downloaded) and its release facts: model name and MLflow version, run, dataset and
    code versions, pair, metrics, threshold, gate decision."""
    name, which = parse_model_spec(spec)
    registry = ModelRegistry(tracking_uri, name)
    chosen: RegisteredVersion | None = registry.get(which) if which.isdigit() else registry.alias(which)
    if chosen is None:
        raise CTScreenError(f"{name} has no version with the alias {which!r}")
    target = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix=f"ctscreen-release-v{chosen.version}-"))
    bundle = registry.download(chosen.version, target)
    facts = {
        "model": name, "mlflow_version": chosen.version, "mlflow_run_id": chosen.run_id, "aliases": list(chosen.aliases),
        "pair": chosen.tags.get("pair", bundle.name), "dataset_version": chosen.tags.get("dataset_rev"),
        "dataset_md5": chosen.tags.get("data_md5"), "gate": chosen.tags.get("gate"),
        "code_version": bundle.provenance.get("code_version"), "metrics": bundle.metrics,
    }
    return bundle, facts
