"""A small synthetic CT series with fake PHI, its lesion and lung masks, and dciodvfy, shared by the
results tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from ctscreen.imaging.readers import load_volume
from serving.results.source import read_source_series

SHAPE_ZYX = (12, 64, 64)
SPACING_ZYX = (2.5, 0.7, 0.7)
PHI = {"PatientName": "Doe^Jane", "PatientID": "MRN-0042", "PatientBirthDate": "19610203", "PatientSex": "F",
       "StudyID": "S17", "AccessionNumber": "ACC9001", "ReferringPhysicianName": "House^Gregory"}
RESULT = {"covid_probability": 0.734512, "positive": True, "threshold": 0.42, "lesion_volume_ml": 12.34,
          "lung_volume_ml": 3456.7, "model": {"name": "unet+attention_resnet50", "version": 7}}


def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU, lesion and lung masks: two air-filled lungs in a body, three lesion blobs inside them."""
    z, y, x = np.mgrid[0:SHAPE_ZYX[0], 0:SHAPE_ZYX[1], 0:SHAPE_ZYX[2]]
    lungs = np.zeros(SHAPE_ZYX, bool)
    for cx in (20, 44):
        lungs |= (((y - 32) / 18) ** 2 + ((x - cx) / 9) ** 2 <= 1) & (z >= 1) & (z <= 10)
    lesions = np.zeros(SHAPE_ZYX, bool)
    for cz, cy, cx, r in ((3, 28, 18, 3), (6, 38, 46, 4), (9, 25, 42, 2)):
        lesions |= ((z - cz) / 1.2) ** 2 + ((y - cy) / r) ** 2 + ((x - cx) / r) ** 2 <= 1
    lesions &= lungs
    hu = np.where(((y - 32) / 28) ** 2 + ((x - 32) / 30) ** 2 <= 1, 40.0, -1000.0)
    hu[lungs] = -850.0
    hu[lesions] = -300.0
    return hu.astype(np.float32), lesions.astype(np.uint8), lungs.astype(np.uint8)


@pytest.fixture(scope="session")
def dciodvfy():
    """``verify`` where Debian's dciodvfy is installed; these checks skip where it is not."""
    if shutil.which("dciodvfy") is None and not Path("/usr/bin/dciodvfy").exists():
        pytest.skip("dciodvfy is absent (Debian package dicom3tools)")
    from serving.results.validation import verify

    def check(dataset, what: str) -> None:
        verification = verify(dataset)
        for warning in verification.warnings:
            print(f"dciodvfy on {what}: {warning}")
        assert verification.errors == [], f"dciodvfy errors on {what}"

    return check


@pytest.fixture(scope="session")
def ct_series(tmp_path_factory) -> dict:
    """The synthetic series written by the project's own writer, its files named against position
    order (so that a reader sorting by name would pair masks with the wrong slices)."""
    hu, lesions, lungs = phantom()
    folder = tmp_path_factory.mktemp("ct") / "series"
    for k, path in enumerate(write_ct_series(hu, SPACING_ZYX, folder, SeriesDescription(attributes=PHI))):
        path.rename(folder / f"image_{SHAPE_ZYX[0] - k:04d}.dcm")
    volume = load_volume(folder)
    return {"folder": folder, "volume": volume, "lesions": lesions, "lungs": lungs,
            "sources": read_source_series(folder, volume.metadata.series_instance_uid)}
