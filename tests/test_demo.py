"""``make demo`` end to end, sized down: synthesise, de-identify, preprocess, summarise, draw."""

from __future__ import annotations

import json

import pydicom
import pytest

from ctscreen.demo import run_demo
from ctscreen.errors import OutputError


def test_demo_writes_summary_and_picture(tmp_path):
    """The preprocessing half; the training half is what tests/training/test_pairs.py runs end to end."""
    out = tmp_path / "demo"
    summary_md = run_demo(out, cases=3, sites=2, seed=1, train=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["cases"] == 3
    assert len(summary["cases"]) == 3
    for case in summary["cases"]:
        assert case["files_deidentified"] == case["input_shape_zyx"][0]
        assert case["lung_dice_vs_truth"] > 0.9
    assert (out / "preprocessed_cases.png").stat().st_size > 10_000
    assert "lung region (classical extraction)" in summary_md.read_text()
    minutes = summary["summary"]["minutes"]  # where the time went, step by step
    assert set(minutes) == {"synthetic data", "de-identification", "lung-region model", "preprocessing", "total"}
    assert minutes["total"] == pytest.approx(sum(v for k, v in minutes.items() if k != "total"), abs=0.02)
    assert "minutes per step: synthetic data" in summary_md.read_text()
    # the de-identified studies carry none of the names and IDs the source series did
    for case in summary["cases"]:
        source = pydicom.dcmread(next((out / "synthetic" / "cases" / case["case_id"] / "dicom").iterdir()))
        secrets = [str(source.PatientName).encode(), str(source.PatientID).encode(), str(source.AccessionNumber).encode()]
        for path in (out / "deidentified" / case["case_id"]).rglob("*.dcm"):
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets), path
    with pytest.raises(OutputError, match="not empty"):
        run_demo(out, cases=1, train=False)
    assert (out / "deidentified" / "manifest.csv").read_text().count("\n") == 4  # what central receives


def test_the_winner_s_call_on_lung1_and_the_share_of_its_nodule_highlighted(untrained_bundle, real_chest_ct, tmp_path):
    """The demo's check on real CT without COVID-19: the call at the bundle's threshold, and how much
    of the annotated nodule the lesion mask covers, read back from what screening wrote."""
    import SimpleITK as sitk

    from ctscreen.demo import _screen_lung1
    from ctscreen.inference.bundle import load_bundle

    checked = _screen_lung1(load_bundle(untrained_bundle), tmp_path / "lung1")
    assert checked["positive"] == (checked["covid_probability"] >= checked["threshold"])
    nodule = sitk.GetArrayFromImage(sitk.ReadImage(str(real_chest_ct.parent / "lung1_label.nrrd"))) > 0
    lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "lung1" / "lesion_mask.nii.gz"))) > 0
    assert lesions.shape == nodule.shape
    assert checked["nodule_highlighted"] == pytest.approx(lesions[nodule].mean(), abs=1e-4)
    assert (tmp_path / "lung1" / "overlay.png").stat().st_size > 10_000
