"""The synthetic dataset as users consume it: files, manifest, geometry, PHI, determinism, errors."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from ctscreen.errors import OutputError
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.synth import MANIFEST_COLUMNS, SITES, SUBTYPES, generate_dataset
from ctscreen.imaging.synth.phi import PRIVATE_CREATOR, PRIVATE_GROUP


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh))


def _slices(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Eight cases: one full block, so every subtype is present."""
    out = tmp_path_factory.mktemp("synth") / "small"
    manifest = generate_dataset(out, cases=8, sites=3, seed=0, progress=False)
    return out, _rows(manifest)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth-tiny")
    runs = {}
    for name, cases, seed, first in (("a3", 3, 7, 0), ("a5", 5, 7, 0), ("b2", 2, 8, 0), ("a3+2", 2, 7, 3)):
        generate_dataset(base / name, cases=cases, sites=2, seed=seed, profile="tiny", progress=False, first=first)
        runs[name] = base / name
    return runs


def test_manifest_columns_and_labels(small):
    out, rows = small
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert [r["case_id"] for r in rows] == [f"case-{i:05d}" for i in range(8)]
    for r in rows:
        assert r["subtype"] in SUBTYPES
        assert r["label"] == ("positive" if r["subtype"] == "covid" else "negative")
        for column in ("image", "lung_mask", "lesion_mask"):
            assert (out / r[column]).exists()
    subtypes = sorted(r["subtype"] for r in rows)
    assert subtypes.count("covid") == 4  # half positive; each negative subtype once per block of eight
    assert sorted(set(subtypes) - {"covid"}) == sorted(SUBTYPES[1:])


def test_masks_lie_on_the_dicom_grid(small):
    out, rows = small
    for r in rows:
        volume = load_volume(out / r["image"])
        assert not volume.warnings
        assert volume.metadata.manufacturer == r["manufacturer"] and volume.metadata.model == r["model"]
        assert volume.metadata.slice_thickness == pytest.approx(float(r["slice_thickness"]))
        assert volume.shape_zyx == (int(r["slices"]), int(r["rows"]), int(r["columns"]))
        masks = {}
        for column in ("lung_mask", "lesion_mask"):
            image = sitk.ReadImage(str(out / r[column]))
            assert image.GetSize() == volume.shape_zyx[::-1]
            np.testing.assert_allclose(image.GetSpacing(), volume.spacing_zyx[::-1], atol=1e-4)
            np.testing.assert_allclose(image.GetOrigin(), volume.origin, atol=1e-4)
            np.testing.assert_allclose(image.GetDirection(), volume.direction.ravel(), atol=1e-6)
            masks[column] = sitk.GetArrayFromImage(image).astype(bool)
        voxel_ml = volume.voxel_volume_ml
        assert masks["lesion_mask"].sum() * voxel_ml == pytest.approx(float(r["lesion_volume_ml"]), abs=2e-3)
        assert masks["lung_mask"].sum() * voxel_ml == pytest.approx(float(r["lung_volume_ml"]), abs=0.1)
        assert 2000 < float(r["lung_volume_ml"]) < 8000
        assert not (masks["lesion_mask"] & ~masks["lung_mask"]).any()
        assert masks["lesion_mask"].any() == (r["subtype"] != "healthy")


def test_fake_phi_in_every_series(small):
    out, rows = small
    institutions = {site.name for site in SITES}
    for r in rows:
        ds = pydicom.dcmread(_slices(out / r["image"])[0])
        assert re.fullmatch(r"[A-Z' -]+\^[A-Z ]+", str(ds.PatientName))
        assert ds.PatientID and ds.AccessionNumber and ds.PatientAddress and ds.PatientTelephoneNumbers
        assert re.fullmatch(r"\d{8}", ds.PatientBirthDate) and ds.PatientSex in ("F", "M")
        age = int(ds.PatientAge[:3])
        assert int(ds.StudyDate[:4]) - int(ds.PatientBirthDate[:4]) in (age, age + 1)
        assert ds.InstitutionName in institutions and ds.InstitutionAddress
        assert "^" in str(ds.ReferringPhysicianName) and "^" in str(ds.OperatorsName)
        assert ds.PatientID in ds.AdditionalPatientHistory  # free text repeats the record number
        assert ds.OtherPatientIDsSequence[0].PatientID
        assert ds.RequestAttributesSequence[0].RequestedProcedureID
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        assert block[0x01].value and block[0x02].value == ds.PatientID
        surname = str(ds.PatientName).split("^")[0]
        assert surname not in r["patient_id"].upper() and ds.PatientID not in r["patient_id"]


def test_sites_differ(small):
    _, rows = small
    assert len({r["site"] for r in rows}) >= 2
    assert len({(r["manufacturer"], r["model"]) for r in rows}) >= 3
    assert len({r["pixel_spacing"] for r in rows}) >= 3
    assert len({r["slice_thickness"] for r in rows}) >= 2


def test_same_seed_gives_identical_files_and_a_larger_dataset_extends_a_smaller_one(tiny_runs):
    three, five = tiny_runs["a3"], tiny_runs["a5"]
    assert _rows(five / "manifest.csv")[:3] == _rows(three / "manifest.csv")
    for case in sorted((three / "cases").iterdir()):
        files = sorted(p.relative_to(three) for p in case.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(five) for p in (five / "cases" / case.name).rglob("*") if p.is_file())
        for name in files:
            assert (three / name).read_bytes() == (five / name).read_bytes(), name
    later = tiny_runs["a3+2"]  # the next batch of the same source: cases 3 and 4
    assert _rows(later / "manifest.csv") == _rows(five / "manifest.csv")[3:]
    for case in sorted((later / "cases").iterdir()):
        for file in (p for p in case.rglob("*") if p.is_file()):
            assert file.read_bytes() == (five / file.relative_to(later)).read_bytes(), file


def test_different_seeds_differ(tiny_runs):
    a, b = _rows(tiny_runs["a3"] / "manifest.csv"), _rows(tiny_runs["b2"] / "manifest.csv")
    assert a[0]["patient_id"] != b[0]["patient_id"]
    pixels_a = pydicom.dcmread(_slices(tiny_runs["a3"] / a[0]["image"])[10]).PixelData
    pixels_b = pydicom.dcmread(_slices(tiny_runs["b2"] / b[0]["image"])[10]).PixelData
    assert pixels_a != pixels_b


def test_tiny_profile_grid(tiny_runs):
    for r in _rows(tiny_runs["a5"] / "manifest.csv"):
        assert (int(r["rows"]), int(r["columns"])) == (64, 64) and int(r["slices"]) <= 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cases": 0}, "at least 1"),
        ({"cases": 2, "sites": 0}, f"from 1 to {len(SITES)}"),
        ({"cases": 2, "sites": len(SITES) + 1}, f"from 1 to {len(SITES)}"),
        ({"cases": 2, "profile": "huge"}, "choose from full, small, tiny"),
        ({"cases": 2, "first": -1}, "first must be"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_non_empty_output_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(OutputError, match="not empty"):
        generate_dataset(tmp_path, cases=1, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    generate_dataset(tmp_path / "out", cases=1, profile="tiny", progress=True)
    captured = capsys.readouterr()
    assert "case" in captured.err and captured.out == ""
