"""De-identification: PHI planted everywhere must be gone from every byte written, while the study keeps
its structure, its pixels and its longitudinal timing, and SRC stays untouched."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, SecondaryCaptureImageStorage, generate_uid

from ctscreen.errors import InputError, OutputError
from ctscreen.imaging.deidentification.engine import _shift_date
from ctscreen.imaging.deidentify import DeidentificationKeyError, DeidentificationReport, deidentify_study, load_key
from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from ctscreen.imaging.readers import load_volume

KEY = b"ctscreen-test-key-0123456789abcdef"
UID_PATTERN = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _phi(patient_id: str, name: str) -> dict:
    """Distinctive PHI for one patient, in every kind of place the profile covers."""
    return {
        "PatientName": name,
        "PatientID": patient_id,
        "PatientBirthDate": "19580214",
        "PatientSex": "F",
        "PatientAge": "062Y",
        "PatientAddress": "42 PHISTREET SPRINGFIELD",
        "PatientTelephoneNumbers": "555-0142-PHI",
        "OtherPatientIDsSequence": [_item(PatientID="OTHERID-PHI-9", IssuerOfPatientID="ISSUER-PHI")],
        "InstitutionName": "ST PHI HOSPITAL",
        "InstitutionAddress": "1 PHIPLAZA AVENUE",
        "ReferringPhysicianName": "REFDOC^PHIANNA",
        "PerformingPhysicianName": "PERFDOC^PHIBOB",
        "OperatorsName": "OPER^PHICAROL",
        "EvaluatorName": "EVAL^PHIDAN",  # a person's name the table does not list
        "AccessionNumber": "ACC-PHI-5566",
        "StudyID": "STUDYID-PHI",
        "StudyDescription": "CT CHEST PHI DESCRIPTION",
        "SeriesDescription": "SERIES PHI DESCRIPTION",
        "ImageComments": "PHI COMMENT CALL WARD 7",
        "AdditionalPatientHistory": "PHI HISTORY SMOKER",
        "RequestAttributesSequence": [_item(RequestedProcedureID="RPID-PHI-1", ScheduledProcedureStepID="SPSID-PHI-2")],
        "ReferencedImageSequence": [_item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=generate_uid())],
        "DeviceSerialNumber": "SN-PHI-31337",
        "StationName": "STATION-PHI",
        "DateOfLastCalibration": "20191231",  # a date the table does not list
        "SOPInstanceUIDOfConcatenationSource": generate_uid(),  # an instance UID the table does not list
    }


PHI_NEEDLES = [
    b"PHI",
    b"DOE^JOHNATHAN",
    b"ROE^RICHARD",
    b"MRN-77123",
    b"MRN-88456",
    b"19580214",
    b"20200201",
    b"20200315",
    b"20191231",
    b"555-0142",
]


def _write_series(folder: Path, patient_id: str, name: str, *, acquired=datetime(2020, 2, 1, 10, 0, 0),
                  transfer_syntax: str = "explicit", study_uid: str | None = None, extra: dict | None = None) -> list[Path]:
    """A 4-slice CT series with PHI, PHI in the preamble, a private tag (top level and in a sequence item)
    and a reference from every slice to the first one."""
    rng = np.random.default_rng(len(name))
    hu = rng.integers(-1000, 400, size=(4, 32, 32)).astype(np.float32)
    attributes = {**_phi(patient_id, name), **(extra or {})}
    attributes["AcquisitionDateTime"] = acquired.strftime("%Y%m%d%H%M%S") + ".000000+0100"
    description = SeriesDescription(acquired=acquired, attributes=attributes)
    if study_uid:
        description.study_instance_uid = study_uid
    paths = write_ct_series(hu, (2.5, 0.8, 0.8), folder, description, transfer_syntax=transfer_syntax)
    first = pydicom.dcmread(paths[0]).SOPInstanceUID
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.preamble = b"PREAMBLE PHI DOE^JOHNATHAN".ljust(128, b"\0")
        ds.private_block(0x0011, "ACME PHI", create=True).add_new(0x01, "LO", f"PRIVATE PHI {name}")
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = first
        ds.ReferencedImageSequence[0].private_block(0x0013, "ACME PHI", create=True).add_new(0x02, "LO", "NESTED PHI")
        ds.save_as(path)
    return paths


def _outputs(dst: Path) -> list[Path]:
    return sorted(p for p in dst.rglob("*") if p.is_file())


def _tree_hash(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in _outputs(folder)}


def _uids(ds: Dataset) -> set[str]:
    """Every instance UID in a dataset, its sequences included (class UIDs name kinds, not people)."""
    found = set()
    for elem in ds.iterall():
        if elem.VR == "UI" and elem.keyword not in ("SOPClassUID", "ReferencedSOPClassUID"):
            found.update(str(v) for v in (elem.value if elem.VM > 1 else [elem.value]) if v)
    return found


@pytest.fixture
def hospital_export(tmp_path) -> Path:
    """A PACS export whose folder names carry PHI, with a non-DICOM note beside the images."""
    src = tmp_path / "export"
    _write_series(src / "DOE_JOHNATHAN_MRN-77123" / "CT_CHEST", "MRN-77123", "DOE^JOHNATHAN")
    (src / "DOE_JOHNATHAN_MRN-77123" / "notes.txt").write_text("PHI: DOE^JOHNATHAN MRN-77123 555-0142")
    return src


def test_no_planted_phi_anywhere_in_the_output(hospital_export, tmp_path):
    src_uids = set().union(*(_uids(pydicom.dcmread(p)) for p in hospital_export.rglob("*.dcm")))
    before = _tree_hash(hospital_export)
    dst = tmp_path / "deid"

    report = deidentify_study(hospital_export, dst, KEY, progress=False)

    assert _tree_hash(hospital_export) == before  # SRC untouched
    outputs = _outputs(dst)
    assert len(outputs) == 4 and all(p.suffix == ".dcm" for p in outputs)  # the note is not copied
    for path in outputs:
        raw = path.read_bytes()
        names = path.relative_to(dst).as_posix().encode()
        for needle in PHI_NEEDLES + [b"DOE_JOHNATHAN", b"CT_CHEST", b"ACME"]:
            assert needle not in raw, (needle, path)
            assert needle not in names, (needle, path)
        for uid in src_uids:
            assert uid.encode() not in raw
        ds = pydicom.dcmread(path)
        assert not [e for e in ds.iterall() if e.tag.is_private]
        assert ds.PatientIdentityRemoved == "YES"
        assert "Basic Application Confidentiality Profile" in ds.DeidentificationMethod
        assert {item.CodeValue for item in ds.DeidentificationMethodCodeSequence} == {"113100", "113107", "113108"}
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert (ds.PatientSex, ds.PatientAge) == ("F", "062Y")  # Retain Patient Characteristics
        assert re.fullmatch(r"CTS-[0-9A-F]{12}", ds.PatientID) and ds.PatientName == ds.PatientID
        assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""
        for gone in ("OtherPatientIDsSequence", "RequestAttributesSequence", "InstitutionName", "StationName",
                     "DeviceSerialNumber", "EvaluatorName", "StudyDescription", "ImageComments"):
            assert gone not in ds
        assert path.relative_to(dst).as_posix() == f"{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID

    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["n_written"] == 4 and summary["n_series"] == 1 and summary["n_studies"] == 1
    assert summary["skipped"] == [{"file": "DOE_JOHNATHAN_MRN-77123/notes.txt", "reason": "not a DICOM file (no DICM header)"}]
    assert [o["code"] for o in summary["options"]] == ["113100", "113107", "113108"]
    assert summary["dst"] == str(dst)


def test_the_series_keeps_its_structure_pixels_and_uid_mapping(hospital_export, tmp_path):
    a, b, other_key = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    deidentify_study(hospital_export, a, KEY, progress=False)
    deidentify_study(hospital_export, b, KEY, progress=False)
    deidentify_study(hospital_export, other_key, b"another-key-0123456789", progress=False)

    assert _tree_hash(a) == _tree_hash(b)  # same key, same input: the same files, byte for byte
    src = {int(ds.InstanceNumber): ds for ds in map(pydicom.dcmread, hospital_export.rglob("*.dcm"))}
    out = {int(ds.InstanceNumber): ds for ds in map(pydicom.dcmread, _outputs(a))}
    for shared in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[shared].value for ds in out.values()}) == 1
    assert len({ds.SOPInstanceUID for ds in out.values()}) == 4
    for n, ds in out.items():
        assert ds.PixelData == src[n].PixelData
        assert ds.SOPClassUID == CTImageStorage
        assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out[1].SOPInstanceUID
        assert all(UID_PATTERN.match(u) and len(u) <= 64 for u in _uids(ds))
    assert not set().union(*map(_uids, out.values())) & set().union(*(_uids(pydicom.dcmread(p)) for p in _outputs(other_key)))

    series_src = next(hospital_export.rglob("CT_CHEST"))
    before, after = load_volume(series_src), load_volume(a / out[1].SeriesInstanceUID)
    assert np.array_equal(before.hu, after.hu)
    assert before.spacing_zyx == after.spacing_zyx and before.origin == after.origin


def test_dates_shift_by_one_offset_per_patient(tmp_path):
    src = tmp_path / "src"
    _write_series(src / "a1", "MRN-77123", "DOE^JOHNATHAN", acquired=datetime(2020, 2, 1, 10, 0, 0))
    _write_series(src / "a2", "MRN-77123", "DOE^JOHNATHAN", acquired=datetime(2020, 3, 15, 9, 30, 0))
    _write_series(src / "b", "MRN-88456", "ROE^RICHARD", acquired=datetime(2020, 2, 1, 10, 0, 0))
    report = deidentify_study(src, tmp_path / "dst", KEY, progress=False)
    assert report.to_dict()["n_studies"] == 3

    shifts: dict[str, set[int]] = {}
    for path in _outputs(tmp_path / "dst"):
        ds = pydicom.dcmread(path)
        shift = _days_back(ds)
        shifts.setdefault(ds.PatientID, set()).add(shift)
        assert ds.ContentDate == ds.SeriesDate == ds.AcquisitionDate == ds.StudyDate
        assert ds.AcquisitionDateTime == ds.StudyDate + ds.AcquisitionTime + ".000000+0100"  # still a valid DT
        assert (date(2019, 12, 31) - datetime.strptime(ds.DateOfLastCalibration, "%Y%m%d").date()).days == shift
        assert ds.StudyTime == ds.AcquisitionTime  # whole days move, times of day stay
    assert len(shifts) == 2 and all(len(s) == 1 for s in shifts.values())  # one pseudonym and one shift per patient
    (a,), (b,) = shifts.values()
    assert a != b and all(365 <= d <= 3650 for d in (a, b))

    again = tmp_path / "again"
    deidentify_study(src / "a2", again, KEY, progress=False)  # another day, another run: same pseudonym, same shift
    ds = pydicom.dcmread(_outputs(again)[0])
    assert shifts[ds.PatientID] == {_days_back(ds)}


def _days_back(ds: Dataset) -> int:
    original = date(2020, 3, 15) if ds.AcquisitionTime == "093000" else date(2020, 2, 1)
    return (original - datetime.strptime(ds.StudyDate, "%Y%m%d").date()).days


@pytest.mark.parametrize(
    "value, days, expected",
    [
        ("20200301", 1, "20200229"),
        ("2020.03.01", 1, "20200229"),
        ("20200301101530.123456+0100", 366, "20190301101530.123456+0100"),
        ("2020", 10, ""),
        ("20201341", 10, ""),
        ("00010101", 10, ""),
    ],
)
def test_shifted_dates_stay_valid_or_are_emptied(value, days, expected):
    assert _shift_date(value, days) == expected


@pytest.mark.parametrize("transfer_syntax", ["rle", "j2k-lossless", "deflate"])
def test_compressed_pixel_data_pass_through_unchanged(tmp_path, transfer_syntax):
    src = tmp_path / "src"
    _write_series(src, "MRN-77123", "DOE^JOHNATHAN", transfer_syntax=transfer_syntax)
    dst = tmp_path / "dst"
    deidentify_study(src, dst, KEY, progress=False)
    before = {int(ds.InstanceNumber): ds for ds in map(pydicom.dcmread, src.iterdir())}
    after = {int(ds.InstanceNumber): ds for ds in map(pydicom.dcmread, _outputs(dst))}
    for n, ds in after.items():
        assert ds.file_meta.TransferSyntaxUID == before[n].file_meta.TransferSyntaxUID
        assert ds.PixelData == before[n].PixelData
        assert "PatientAddress" not in ds and not [e for e in ds.iterall() if e.tag.is_private]
    assert np.array_equal(load_volume(src).hu, load_volume(next(dst.iterdir())).hu)


def test_burned_in_images_are_withheld_and_reported(tmp_path):
    src = tmp_path / "src"
    _write_series(src / "ct", "MRN-77123", "DOE^JOHNATHAN")
    _write_series(src / "dose", "MRN-77123", "DOE^JOHNATHAN", extra={"BurnedInAnnotation": "YES"})
    screenshot = pydicom.dcmread(next((src / "ct").iterdir()))
    screenshot.SOPClassUID = screenshot.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    screenshot.SOPInstanceUID = screenshot.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del screenshot.BurnedInAnnotation
    screenshot.save_as(src / "screenshot.dcm")

    report = deidentify_study(src, tmp_path / "withheld", KEY, progress=False).to_dict()
    assert report["n_written"] == 4 and report["n_withheld"] == 5
    flagged = {entry["file"]: entry for entry in report["burned_in"]}
    assert set(flagged) == {f"dose/slice_{k:04d}.dcm" for k in range(4)} | {"screenshot.dcm"}
    assert flagged["dose/slice_0000.dcm"]["reason"] == "BurnedInAnnotation is YES"
    assert "Secondary Capture" in flagged["screenshot.dcm"]["reason"]
    assert all(entry["action"] == "withheld" and entry["output"] is None for entry in flagged.values())
    assert len(_outputs(tmp_path / "withheld")) == 4

    kept = deidentify_study(src, tmp_path / "kept", KEY, keep_burned_in=True, progress=False).to_dict()
    assert kept["n_written"] == 9 and kept["n_burned_in"] == 5 and kept["n_withheld"] == 0
    for entry in kept["burned_in"]:
        assert entry["action"] == "kept"
        assert pydicom.dcmread(tmp_path / "kept" / entry["output"]).PatientIdentityRemoved == "YES"


def test_destination_rules(hospital_export, tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "earlier.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        deidentify_study(hospital_export, dst, KEY, progress=False)
    assert (dst / "earlier.txt").read_text() == "keep me"

    deidentify_study(hospital_export, dst, KEY, overwrite=True, progress=False)
    assert not (dst / "earlier.txt").exists() and len(_outputs(dst)) == 4

    with pytest.raises(OutputError, match="inside SRC"):
        deidentify_study(hospital_export, hospital_export / "out", KEY, progress=False)
    with pytest.raises(OutputError, match="contains SRC"):
        deidentify_study(hospital_export, tmp_path, KEY, overwrite=True, progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".partial", ".old"))]


def test_single_file_source(hospital_export, tmp_path):
    one = next(hospital_export.rglob("slice_0002.dcm"))
    report = deidentify_study(one, tmp_path / "one", KEY, progress=False)
    assert report.n_written == 1 and isinstance(report, DeidentificationReport)
    assert pydicom.dcmread(_outputs(tmp_path / "one")[0]).InstanceNumber == 3


PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


@pytest.mark.parametrize(
    "transfer_syntax, end",
    [
        ("explicit", lambda data: len(data) - 300),  # inside the pixel data
        ("explicit", lambda data: data.rindex(PIXEL_DATA_TAG)),  # just before it
        ("rle", lambda data: len(data) - 40),  # inside the last fragment
    ],
    ids=["in-pixels", "before-pixels", "in-fragment"],
)
def test_truncated_file_is_named_and_nothing_is_written(tmp_path, transfer_syntax, end):
    src = tmp_path / "src"
    paths = _write_series(src, "MRN-77123", "DOE^JOHNATHAN", transfer_syntax=transfer_syntax)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: end(data)])
    dst = tmp_path / "dst"
    with pytest.raises(InputError, match="truncated") as error:
        deidentify_study(src, dst, KEY, progress=False)
    assert error.value.path == paths[2]
    assert not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_unusable_sources(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        deidentify_study(tmp_path / "missing", tmp_path / "dst", KEY, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty folder"):
        deidentify_study(tmp_path / "empty", tmp_path / "dst", KEY, progress=False)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("hello")
    (notes / "b.jpg").write_bytes(b"\xff\xd8" + bytes(200))
    with pytest.raises(InputError, match="no DICOM files among 2"):
        deidentify_study(notes, tmp_path / "dst", KEY, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes"]


def test_key_loading(tmp_path, monkeypatch):
    monkeypatch.delenv("CTSCREEN_DEID_KEY", raising=False)
    with pytest.raises(DeidentificationKeyError, match="--key-file or set CTSCREEN_DEID_KEY"):
        load_key(None)
    monkeypatch.setenv("CTSCREEN_DEID_KEY", "short")
    with pytest.raises(DeidentificationKeyError, match="at least 16"):
        load_key(None)
    monkeypatch.setenv("CTSCREEN_DEID_KEY", "0123456789abcdef0123")
    assert load_key(None) == b"0123456789abcdef0123"

    key_file = tmp_path / "deid.key"
    key_file.write_text("fedcba9876543210fedcba\n")
    assert load_key(key_file) == b"fedcba9876543210fedcba"  # the file wins over the environment
    key_file.write_text("tooshort\n")
    with pytest.raises(InputError, match="at least 16") as error:
        load_key(key_file)
    assert error.value.path == key_file
    with pytest.raises(InputError, match="no such key file"):
        load_key(tmp_path / "absent.key")
    with pytest.raises(DeidentificationKeyError):
        deidentify_study(tmp_path, tmp_path / "dst", b"short", progress=False)


def test_real_scanner_series(real_j2k_series, tmp_path):
    """A real Siemens export: site names, AE titles, serials and private CSA headers must all go."""
    dst = tmp_path / "dst"
    report = deidentify_study(real_j2k_series, dst, KEY, progress=False)
    assert report.n_written == 20
    src_uids = set()
    for path in real_j2k_series.iterdir():
        ds = pydicom.dcmread(path)
        src_uids |= _uids(ds) | {str(ds.file_meta.MediaStorageSOPInstanceUID)}
    for path in _outputs(dst):
        raw = path.read_bytes()
        for needle in (b"Petersgraben", b"PETCT2", b"QR_SNOWFOX", b"60064", b"30543134", b"SIEMENS CSA", b"20221208"):
            assert needle not in raw, needle
        assert not any(uid.encode() in raw for uid in src_uids)
    assert np.array_equal(load_volume(real_j2k_series).hu, load_volume(next(dst.iterdir())).hu)
