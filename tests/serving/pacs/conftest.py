"""An Orthanc for the package (its own CTSCREEN_HOME, stopped afterwards) and small synthetic CT
series carrying patient data, to check that what arrives is what was sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from tests.serving.conftest import running_orthanc

PHI = {"PatientName": "Doe^Jane", "PatientID": "PID-0042", "PatientBirthDate": "19600101", "AccessionNumber": "ACC-7"}


@pytest.fixture(scope="package", autouse=True)
def pacs_home(tmp_path_factory):
    """CTSCREEN_HOME for the package: Orthanc's loopback shim is built there, not in the user's home."""
    home = tmp_path_factory.mktemp("pacs-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("CTSCREEN_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture(scope="package")
def pacs(pacs_home, tmp_path_factory):
    """Orthanc as the hospital PACS, AE title PACS."""
    with running_orthanc(tmp_path_factory, "orthanc", aet="PACS", stable_age_s=1) as server:
        yield server


def make_series(folder: Path, slices: int = 6, transfer_syntax: str = "explicit", seed: int = 0) -> list[Path]:
    """A 32 x 32 CT series of ``slices`` slices with patient data, one fresh study."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(-400, 300, (slices, 32, 32)).astype(np.float32)
    return write_ct_series(hu, (2.5, 0.8, 0.8), folder, SeriesDescription(attributes=PHI), transfer_syntax=transfer_syntax)


@pytest.fixture
def series(tmp_path):
    """``series(transfer_syntax="explicit", slices=6)``: a fresh series, in its own folder."""
    made = []

    def make(transfer_syntax: str = "explicit", slices: int = 6) -> list[Path]:
        made.append(make_series(tmp_path / f"series-{len(made)}", slices, transfer_syntax, seed=len(made)))
        return made[-1]
    return make


def assert_same_instances(received: list[Path], sent: list[Path]) -> None:
    """The same SOP instances, patient data, transfer syntax and pixels."""
    got = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, received)}
    want = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, sent)}
    assert sorted(got) == sorted(want)
    for uid, original in want.items():
        copy = got[uid]
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert copy.file_meta.MediaStorageSOPInstanceUID == uid
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", *PHI):
            assert copy.get(keyword) == original.get(keyword), keyword
        np.testing.assert_array_equal(copy.pixel_array, original.pixel_array)
