import subprocess
import sys

import mlflow
import pytest

from ctscreen.registry.models import BUNDLE_ARTIFACT, CHALLENGER, CHAMPION, ModelRegistry, RegistryError


@pytest.fixture
def registry(tmp_path, untrained_bundle):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("retrain", artifact_location=str(tmp_path / "artifacts"))
    runs = []
    for stage in range(3):
        with mlflow.start_run(experiment_id=experiment, run_name=f"stage-{stage}") as run:
            mlflow.log_artifacts(str(untrained_bundle), BUNDLE_ARTIFACT)
            runs.append(run.info.run_id)
    return ModelRegistry(uri), runs


def test_versions_aliases_promotion_and_rollback(registry, tmp_path):
    models, runs = registry
    first = models.register(runs[0], {"dataset_rev": "abc", "gate": "passed"})
    assert first.version == "1" and first.tags["dataset_rev"] == "abc"
    with pytest.raises(RegistryError, match="no champion to roll back"):
        models.rollback()
    models.promote(first.version)
    second = models.register(runs[1], {})
    models.set_challenger(second.version)
    assert models.alias(CHALLENGER).version == "2" and models.alias(CHAMPION).version == "1"
    with pytest.raises(RegistryError, match="first champion"):
        models.rollback()
    assert models.promote("2").tags["previous_champion"] == "1"
    third = models.register(runs[2], {})
    models.promote(third.version)
    assert [(v.version, v.aliases) for v in models.versions()] == [("1", ()), ("2", (CHALLENGER,)), ("3", (CHAMPION,))]
    assert models.rollback().version == "2" and models.alias(CHAMPION).version == "2"
    assert models.rollback().version == "1"
    with pytest.raises(RegistryError, match="no version 9"):
        models.promote("9")


def test_a_registered_bundle_downloads_and_loads(registry, tmp_path):
    models, runs = registry
    version = models.register(runs[0], {})
    bundle = models.download(version.version, tmp_path / "downloaded")
    assert bundle.segmentation["name"] == "fcn8s" and bundle.classification["name"] == "resnet50"
    assert bundle.threshold == 0.5 and (bundle.root / "segmentation.onnx").is_file()


def test_the_default_model_is_the_registry_champion_once_there_is_one(tmp_path, monkeypatch, untrained_bundle):
    from ctscreen.errors import InputError
    from ctscreen.inference.bundle import set_default_bundle
    from ctscreen.registry.default import current_default_bundle

    monkeypatch.setenv("CTSCREEN_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(InputError, match="no default model yet"):
        current_default_bundle()
    assert not (tmp_path / "mlflow.db").exists()  # asking did not create a registry
    set_default_bundle(untrained_bundle)
    assert current_default_bundle().root == untrained_bundle  # the demo's winner
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=mlflow.create_experiment("x", artifact_location=str(tmp_path / "art"))) as run:
        mlflow.log_artifacts(str(untrained_bundle), BUNDLE_ARTIFACT)
    models = ModelRegistry(uri)
    models.register(run.info.run_id, {})
    assert current_default_bundle().root == untrained_bundle  # registered but not champion yet
    models.promote("1")
    champion = current_default_bundle()
    assert champion.root == tmp_path / "champion" / "v1" / "bundle" and champion.threshold == 0.5


def test_a_failed_release_leaves_no_half_registered_version_and_no_alias_moved(registry, monkeypatch):
    models, runs = registry
    models.release_candidate(runs[0], {}, promote=True)
    models.release_candidate(runs[1], {}, promote=False)
    before = [(v.version, v.aliases) for v in models.versions()]

    def broken_promote(version):
        raise RuntimeError("registry went away")

    monkeypatch.setattr(models, "promote", broken_promote)  # a fault in the last step of the release
    with pytest.raises(RuntimeError, match="went away"):
        models.release_candidate(runs[2], {}, promote=True)
    assert [(v.version, v.aliases) for v in models.versions()] == before == [("1", (CHAMPION,)), ("2", (CHALLENGER,))]


def test_two_releases_at_once_both_land_with_their_own_versions(registry):
    """Two pipelines finishing together: both versions registered, numbered apart, and challenger on one of them."""
    models, runs = registry
    script = ("import sys\nfrom ctscreen.registry.models import ModelRegistry\n"
              "ModelRegistry(sys.argv[1]).release_candidate(sys.argv[2], {'bundle_sha256': sys.argv[2]}, promote=True)\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, models.tracking_uri, run], stderr=subprocess.PIPE, text=True) for run in runs[:2]]
    finished = [(w.wait(timeout=300), w.stderr.read()) for w in writers]
    assert [code for code, _ in finished] == [0, 0], [told[-1500:] for _, told in finished]
    versions = models.versions()
    assert [v.version for v in versions] == ["1", "2"] and sorted(v.run_id for v in versions) == sorted(runs[:2])
    assert models.alias(CHALLENGER).version in ("1", "2") and models.alias(CHAMPION).version in ("1", "2")
