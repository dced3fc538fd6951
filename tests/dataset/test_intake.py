import csv
import secrets
import shutil
from pathlib import Path

import pydicom
import pytest

from ctscreen.dataset.intake import check_intake
from ctscreen.dataset.synthetic import synthetic_intake
from ctscreen.errors import InputError, OutputError
from ctscreen.imaging.deidentification.audit import phi_findings
from ctscreen.imaging.synth import generate_dataset
from ctscreen.manifest import PATH_COLUMNS, write_manifest
from tests.dataset.bad_cases import plant_bad_cases


@pytest.fixture(scope="module")
def intake(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arrivals") / "intake"
    synthetic_intake(folder, cases=3, key=secrets.token_bytes(32), profile="tiny", progress=False)
    return folder, plant_bad_cases(folder)


def test_good_cases_are_accepted_and_each_bad_one_is_rejected_with_its_reason(intake):
    folder, planted = intake
    report = check_intake(folder)
    assert [r["case_id"] for r in report.accepted] == ["case-00000", "case-00001", "case-00002"]
    reasons = {r["case_id"]: r["reason"] for r in report.rejected}
    assert set(reasons) == set(planted)
    for case_id, expected in planted.items():
        assert expected in reasons[case_id], (case_id, reasons[case_id])
    assert "PatientIdentityRemoved is not YES" in reasons["bad-not-deidentified"]
    assert "spacing_zyx" in reasons["bad-wrong-grid"]


def test_phi_audit_tells_the_hospital_copy_from_the_deidentified_one(tmp_path, intake):
    folder, _ = intake
    deidentified = pydicom.dcmread(next((folder / "cases" / "case-00000" / "image").rglob("*.dcm")))
    assert phi_findings(deidentified) == []
    raw = generate_dataset(tmp_path / "raw", cases=1, profile="tiny", progress=False)
    original = pydicom.dcmread(sorted((raw.parent / "cases" / "case-00000" / "dicom").iterdir())[0])
    findings = phi_findings(original)
    assert "PatientIdentityRemoved is not YES" in findings
    assert any("Patient's Address" in f for f in findings) and any("private attribute" in f for f in findings)


def test_intake_without_manifest_and_a_used_intake_folder_are_refused(tmp_path, intake):
    with pytest.raises(InputError, match="no manifest.csv"):
        check_intake(tmp_path)
    with pytest.raises(OutputError, match="not empty"):
        synthetic_intake(intake[0], cases=1, key=b"k" * 32, profile="tiny", progress=False)


def test_an_intake_of_case_packages_takes_all_their_rows_and_rejects_a_case_id_twice(tmp_path, intake):
    """The layout edge sites deliver: one folder per case, each with its own manifest.csv."""
    folder, _ = intake
    rows = list(csv.DictReader((folder / "manifest.csv").read_text().splitlines()))
    packages = tmp_path / "packages"
    for name, row in [("a", rows[0]), ("b", rows[1]), ("again", rows[0])]:
        case_dir = folder / Path(row["image"]).parent
        shutil.copytree(case_dir, packages / name)
        write_manifest([{**row, **{c: Path(row[c]).relative_to(case_dir.relative_to(folder)).as_posix() for c in PATH_COLUMNS}}],
                       packages / name / "manifest.csv")
    shutil.copytree(folder / Path(rows[2]["image"]).parent, packages / ".c.partial")  # still being delivered: not looked at
    (packages / "half-uploaded" / "image").mkdir(parents=True)
    report = check_intake(packages)
    assert [r["case_id"] for r in report.accepted] == ["case-00000", "case-00001"]
    assert report.accepted[0]["image"] == str(packages / "a" / "image")
    reasons = {r["case_id"]: r["reason"] for r in report.rejected}
    assert reasons == {"half-uploaded": "no manifest.csv: not a case package, or one still being uploaded",
                       "case-00000": "case_id appears twice in the intake"}
