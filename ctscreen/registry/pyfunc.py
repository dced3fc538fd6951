"""The screening bundle as an MLflow model of the pyfunc flavour, so that MLflow's own tools
(``mlflow.pyfunc.load_model``, ``mlflow models predict`` and ``serve``) load and run it. It is logged
beside the plain ``bundle/`` artifact, which registration and releases keep reading.

The model runs the bundle's ONNX graphs under ONNX Runtime (the graphs Triton serves) through
``screen_volume``, the one screening path. Its signature is MLflow's tensor-based one, a dict of
named arrays (JSON: ``{"inputs": {"hu": [...], "spacing_zyx": [...]}}``)::

    input   hu                 float32 (z, y, x)  Hounsfield units, axes as ctscreen's readers give them
            spacing_zyx        float64 (3,)       voxel size in mm, in the array's axis order
    output  covid_probability  float64 (1,)       the classifier's probability, as ``Screening`` holds it
            positive           bool (1,)          probability at or above the bundle's threshold
            lesion_mask        uint8 (z, y, x)    on the input's grid
            lung_mask          uint8 (z, y, x)

MLflow enforces the dtypes, ranks and keys before the model runs (an ``MlflowException`` naming the
mismatch); the model itself refuses, as ``InputError``, what a schema cannot say (a spacing that is
not positive) and the same rank and key mistakes when it is called without MLflow's wrapper.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

import ctscreen
from ctscreen.errors import InputError
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.bundle import load_bundle
from ctscreen.inference.screen import LocalPair, screen_volume

VOLUME = (-1, -1, -1)
MODEL_SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.float32), VOLUME, "hu"), TensorSpec(np.dtype(np.float64), (3,), "spacing_zyx")]),
    outputs=Schema([
        TensorSpec(np.dtype(np.float64), (1,), "covid_probability"), TensorSpec(np.dtype(np.bool_), (1,), "positive"),
        TensorSpec(np.dtype(np.uint8), VOLUME, "lesion_mask"), TensorSpec(np.dtype(np.uint8), VOLUME, "lung_mask"),
    ]),
)
# Written out rather than inferred by MLflow (slow, and it would list this whole environment);
# ctscreen brings the rest of what screening imports. MLflow adds its own pin.
PIP_REQUIREMENTS = [f"ctscreen=={ctscreen.__version__}", "onnxruntime", "numpy"]


def model_input_volume(model_input) -> CTVolume:
    """The CT volume a model input describes, or an ``InputError`` saying what is wrong with it."""
    missing = [key for key in ("hu", "spacing_zyx") if not isinstance(model_input, dict) or key not in model_input]
    if missing:
        raise InputError("model input", f"missing {missing}: give {{'hu': float32 (z, y, x) in HU, 'spacing_zyx': float64 (3,) in mm}}")
    hu = np.asarray(model_input["hu"], np.float32)
    if hu.ndim != 3 or 0 in hu.shape:
        raise InputError("hu", f"needs three non-empty axes (z, y, x), got shape {hu.shape}")
    spacing = np.asarray(model_input["spacing_zyx"], np.float64)
    if spacing.shape != (3,) or not (np.isfinite(spacing) & (spacing > 0)).all():
        raise InputError("spacing_zyx", f"needs three positive voxel sizes in mm (z, y, x), got {spacing.tolist()}")
    return CTVolume(hu, tuple(float(s) for s in spacing))


class ScreeningModel(mlflow.pyfunc.PythonModel):
    """One study's screening by the bundle logged with it (artifact ``bundle``), on ONNX Runtime."""

    def load_context(self, context):
        self.bundle = load_bundle(context.artifacts["bundle"])
        self.pair = LocalPair(self.bundle, "onnx")

    def predict(self, context, model_input, params=None):
        screening = screen_volume(model_input_volume(model_input), self.bundle, self.pair)
        return {
            "covid_probability": np.array([screening.covid_probability], np.float64),
            "positive": np.array([screening.positive]),
            "lesion_mask": screening.lesions.astype(np.uint8, copy=False),
            "lung_mask": screening.lungs.astype(np.uint8, copy=False),
        }


def log_bundle_model(bundle_dir: str | Path, artifact_path: str = "model") -> str:
    """Logs the bundle at ``bundle_dir`` as a pyfunc model named ``artifact_path`` into the active
    MLflow run; returns the model's URI (``models:/<model id>``)."""
    if mlflow.active_run() is None:
        raise RuntimeError("log_bundle_model logs into the active MLflow run: call it inside mlflow.start_run()")
    load_bundle(bundle_dir)  # a folder that is no bundle is refused before anything is logged
    info = mlflow.pyfunc.log_model(name=artifact_path, python_model=ScreeningModel(), artifacts={"bundle": str(bundle_dir)},
                                   signature=MODEL_SIGNATURE, pip_requirements=PIP_REQUIREMENTS)
    return info.model_uri
