"""Screening one study with a trained bundle: the edge's function, on real and synthetic CT."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from ctscreen.inference.bundle import load_bundle
from ctscreen.inference.screen import screen_study

KEYS = {"covid_probability", "positive", "threshold", "lesion_volume_ml", "lung_volume_ml", "lesion_mask", "lung_mask",
        "overlay_png", "model", "timings_s"}


def test_screen_cli_json_on_real_ct(trained_pairs, real_chest_ct, tmp_path):
    bundle = trained_pairs["summary"]["bundle"]
    result = subprocess.run([sys.executable, "-m", "ctscreen.cli", "screen", str(real_chest_ct), "--bundle", bundle,
                             "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert KEYS <= set(report)
    assert 0.0 <= report["covid_probability"] <= 1.0
    assert report["positive"] == (report["covid_probability"] >= report["threshold"])
    assert 1500 < report["lung_volume_ml"] < 5000
    mask = sitk.ReadImage(report["lesion_mask"])
    assert mask.GetSize() == sitk.ReadImage(str(real_chest_ct)).GetSize()  # on the study's own grid
    lesions = sitk.GetArrayFromImage(mask).astype(bool)
    lungs = sitk.GetArrayFromImage(sitk.ReadImage(report["lung_mask"])).astype(bool)
    assert not (lesions & ~lungs).any()
    assert report["lesion_volume_ml"] == pytest.approx(lesions.sum() * np.prod(mask.GetSpacing()) / 1000, abs=0.01)
    assert {"load", "preprocess", "segment", "classify", "total"} <= set(report["timings_s"])


def test_onnx_backend_agrees_with_pytorch(trained_pairs, tmp_path):
    bundle = load_bundle(trained_pairs["summary"]["bundle"])
    study = next((trained_pairs["root"] / "data" / "cases").iterdir()) / "dicom"
    eager = screen_study(study, bundle, tmp_path / "torch", backend="torch")
    onnx = screen_study(study, bundle, tmp_path / "onnx", backend="onnx")
    assert onnx["covid_probability"] == pytest.approx(eager["covid_probability"], abs=1e-4)
    assert onnx["lesion_volume_ml"] == pytest.approx(eager["lesion_volume_ml"], rel=0.02, abs=0.5)


def test_screen_without_a_default_model_says_so(tmp_path, real_chest_ct):
    env = {"CTSCREEN_HOME": str(tmp_path / "home"), "PATH": ""}
    result = subprocess.run([sys.executable, "-m", "ctscreen.cli", "screen", str(real_chest_ct)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 2
    assert "no default model yet" in result.stderr and "--bundle" in result.stderr


def test_a_bounded_window_screens_on_the_study_grid_and_bad_windows_are_refused(untrained_bundle, real_chest_ct, tmp_path):
    bundle = load_bundle(untrained_bundle)
    result = screen_study(real_chest_ct, bundle, tmp_path, backend="onnx", window_zyx=(16, 32, 32), overlap=0.1)
    assert result["model"]["window_zyx"] == [16, 32, 32] and result["model"]["overlap"] == 0.1
    assert sitk.ReadImage(result["lesion_mask"]).GetSize() == sitk.ReadImage(str(real_chest_ct)).GetSize()
    with pytest.raises(ValueError, match="multiple of 16"):
        screen_study(real_chest_ct, bundle, tmp_path, window_zyx=(10, 32, 32))
    with pytest.raises(ValueError, match="overlap"):
        screen_study(real_chest_ct, bundle, tmp_path, overlap=1.0)


def test_screening_runs_without_the_training_code():
    """The edge image carries inference, not training: screening must not import it (nor evaluation)."""
    probe = ("import sys, ctscreen.inference.screen, ctscreen.inference.pair; "
             "print(sorted(m for m in sys.modules if m.startswith(('ctscreen.training', 'ctscreen.evaluation'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
