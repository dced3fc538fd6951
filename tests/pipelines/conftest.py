"""The retrain pipeline run once for the package: two stages and a rerun on unchanged data, whose
registry the pipeline tests and the release-to-edge test read."""

import secrets

import pytest

from ctscreen.dataset.repository import DatasetRepository
from ctscreen.dataset.synthetic import synthetic_intake
from ctscreen.registry.models import CHAMPION, ModelRegistry
from pipelines.runner import run_local
from tests.dataset.bad_cases import plant_bad_cases
from tests.pipelines.tiny import LUNGS, MODELS, PROMOTE, TINY

@pytest.fixture(scope="package")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    patch = pytest.MonkeyPatch()
    patch.setenv("CTSCREEN_HOME", str(root / "home"))
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    key, uri = secrets.token_bytes(32), f"sqlite:///{root / 'home' / 'mlflow.db'}"
    (root / "home").mkdir()
    runs, versions, splits = [], [], []
    for stage, (first, count) in enumerate(((0, 14), (14, 6))):
        intake = root / f"intake-{stage}"
        synthetic_intake(intake, cases=count, key=key, profile="tiny", first=first, progress=False)
        planted = plant_bad_cases(intake) if stage == 0 else {}
        runs.append(run_local(intake, root / "home" / "dataset", uri, overrides=TINY, lung_overrides=LUNGS,
                              gate_overrides=PROMOTE, **MODELS) | {"planted": planted})
        repo = DatasetRepository.open(root / "home" / "dataset")
        versions.append(repo.version())
        splits.append(repo.split_at("HEAD"))
    registry = ModelRegistry(uri)
    after_two_stages = {v.version: v for v in registry.versions()}, registry.alias(CHAMPION).version
    # the same data again: cached steps are reused
    runs.append(run_local(root / "intake-1", root / "home" / "dataset", uri, overrides=TINY, lung_overrides=LUNGS,
                          gate_overrides=PROMOTE, **MODELS))
    yield root, uri, runs, versions, splits, after_two_stages
    patch.undo()
