import secrets

import pydicom
import pytest

from ctscreen.dataset.intake import check_intake
from ctscreen.dataset.synthetic import synthetic_intake
from ctscreen.errors import InputError, OutputError
from ctscreen.imaging.deidentification.audit import phi_findings
from ctscreen.imaging.synth import generate_dataset
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
