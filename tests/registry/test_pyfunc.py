"""The bundle as an MLflow pyfunc model: logged with its signature into a real tracking store, loaded
back by MLflow's own loader, and screening exactly as ``screen_volume`` does in process."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from ctscreen.errors import InputError
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.bundle import load_bundle
from ctscreen.inference.screen import LocalPair, screen_volume
from ctscreen.registry.pyfunc import MODEL_SIGNATURE, PIP_REQUIREMENTS, log_bundle_model

SPACING_ZYX = (2.5, 2.0, 2.0)  # the phantom's lungs are then large enough for the classical lung extraction


@pytest.fixture(scope="module")
def logged(tmp_path_factory, untrained_bundle):
    """One model logged into a run of a SQLite tracking store, and MLflow's loaded copy of it."""
    root = tmp_path_factory.mktemp("pyfunc")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("retrain", artifact_location=str(root / "artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        uri = log_bundle_model(untrained_bundle)
    return SimpleNamespace(tracking_uri=tracking_uri, run_id=run.info.run_id, uri=uri, model=mlflow.pyfunc.load_model(uri))


def _input(hu, spacing=SPACING_ZYX) -> dict:
    return {"hu": hu, "spacing_zyx": np.asarray(spacing, np.float64)}


def test_the_logged_model_is_a_pyfunc_with_its_signature_in_the_run(logged, untrained_bundle):
    mlflow.set_tracking_uri(logged.tracking_uri)
    described = Model.load(logged.uri)
    assert "python_function" in described.flavors
    assert described.signature == MODEL_SIGNATURE
    assert described.signature.inputs.input_names() == ["hu", "spacing_zyx"]
    assert described.signature.outputs.input_names() == ["covid_probability", "positive", "lesion_mask", "lung_mask"]
    assert mlflow.get_logged_model(logged.uri.removeprefix("models:/")).source_run_id == logged.run_id
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged.uri))
    assert set(PIP_REQUIREMENTS) <= set((local / "requirements.txt").read_text().split())  # as given, not inferred
    assert load_bundle(local / "artifacts" / "bundle").name == load_bundle(untrained_bundle).name


def test_mlflow_screens_exactly_as_screen_volume_does_in_process(logged, untrained_bundle, phantom_hu):
    bundle = load_bundle(untrained_bundle)
    expected = screen_volume(CTVolume(phantom_hu, SPACING_ZYX), bundle, LocalPair(bundle, "onnx"))
    got = logged.model.predict(_input(phantom_hu))
    assert got["covid_probability"].dtype == np.float64 and got["covid_probability"].shape == (1,)
    assert got["covid_probability"].tobytes() == np.float64(expected.covid_probability).tobytes()  # to the bit
    assert got["positive"].tolist() == [expected.positive]
    for key, mask in (("lesion_mask", expected.lesions), ("lung_mask", expected.lungs)):
        assert got[key].dtype == np.uint8 and got[key].shape == phantom_hu.shape  # on the input's grid
        np.testing.assert_array_equal(got[key], mask)
    assert got["lung_mask"].any()


@pytest.mark.parametrize("spacing", [(2.5, 0.0, 2.0), (2.5, -2.0, 2.0), (np.nan, 2.0, 2.0)])
def test_a_spacing_that_is_not_positive_is_refused(logged, phantom_hu, spacing):
    with pytest.raises(InputError, match=r"spacing_zyx: needs three positive voxel sizes"):
        logged.model.predict(_input(phantom_hu, spacing))


def test_wrong_ranks_and_missing_keys_are_refused_by_mlflow_and_by_the_model(logged, phantom_hu):
    with pytest.raises(MlflowException, match=r"Shape of input \(48, 48\) does not match expected shape \(-1, -1, -1\)"):
        logged.model.predict(_input(phantom_hu[0]))
    with pytest.raises(MlflowException, match=r"missing inputs \['spacing_zyx'\]"):
        logged.model.predict({"hu": phantom_hu})
    unwrapped = logged.model.unwrap_python_model()  # called without MLflow's schema enforcement
    with pytest.raises(InputError, match=r"hu: needs three non-empty axes \(z, y, x\), got shape \(48, 48\)"):
        unwrapped.predict(None, _input(phantom_hu[0]))
    with pytest.raises(InputError, match=r"model input: missing \['spacing_zyx'\]"):
        unwrapped.predict(None, {"hu": phantom_hu})


def test_logging_needs_an_active_run_and_a_bundle(logged, tmp_path):
    mlflow.set_tracking_uri(logged.tracking_uri)
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_bundle_model(tmp_path)
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("retrain").experiment_id):
        with pytest.raises(InputError, match="not a model bundle"):
            log_bundle_model(tmp_path)
