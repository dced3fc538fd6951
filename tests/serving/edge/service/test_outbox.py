"""Confirmed cases back to central: de-identified, audited, delivered once to a path or an S3 intake
that central's ingest accepts; retried while central is away, refused when PHI would leave."""

from __future__ import annotations

import re
import secrets
import shutil
from datetime import datetime

import numpy as np
import pydicom
import pytest

from ctscreen.dataset.intake import check_intake, intake_folder
from ctscreen.errors import InputError
from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.volume import write_mask
from ctscreen.storage_url import parse_s3_url
from serving.edge.service import outbox
from serving.edge.service.config import CentralSettings
from serving.edge.service.metrics import ServiceMetrics
from serving.edge.service.outbox import MISSED_LESIONS, CentralQueue, case_id_for
from serving.edge.service.store import CT_IMAGE, Instance, Outgoing, ResultsStore, Study

SITE = "north"
PHI = {"PatientName": "Doe^Jane^Quincy", "PatientID": "MRN-4711-XYZ", "PatientBirthDate": "19610203",
       "InstitutionName": "St Elsewhere General", "PatientAddress": "12 Main Street Springfield",
       "ReferringPhysicianName": "House^Gregory", "AccessionNumber": "ACC-99881", "OtherPatientIDs": "NHS-123-456-7890"}
PRIVATE = ((0x0029, "ACME SCANNER", 0x10, "LO", "Doe^Jane^Quincy"),)
PHYSICIAN, NOTE = "Dr Kildare", "Doe^Jane^Quincy: compare with her 2019 scan"


class Site:
    """One hospital's results store, spool and results, with screened studies as the worker leaves them."""

    def __init__(self, root, intake):
        self.root = root
        self.key_file = root / "deid.key"
        root.mkdir(parents=True, exist_ok=True)
        self.key_file.write_text(secrets.token_hex(32))
        self.state = root / "state"
        self.store = ResultsStore(f"sqlite:///{root / 'results.db'}")
        self.settings = CentralSettings(intake=str(intake), deidentification_key_file=self.key_file, max_backoff_s=900)
        self.metrics = ServiceMetrics(SITE)
        self.queue = CentralQueue(self.store, self.settings, SITE, self.state, self.metrics)

    def screened_study(self, finding="covid", verdict="confirmed", missed_lesions=False, attributes=None, n=0) -> Study:
        description = SeriesDescription(manufacturer="ACME", model="Scanner 9000", attributes={**PHI, **(attributes or {})},
                                        private=PRIVATE)
        hu = np.full((8, 32, 32), -1000.0, np.float32)
        hu[:, 6:26, 4:28] = 40.0
        hu[:, 10:22, 7:15] = hu[:, 10:22, 17:25] = -850.0
        series = self.root / "spool" / f"study-{n}" / "ct"
        files = write_ct_series(hu, (2.5, 0.8, 0.8), series, description)
        scout = write_ct_series(hu[:2], (2.5, 0.8, 0.8), self.root / "spool" / f"study-{n}" / "scout",
                                SeriesDescription(study_instance_uid=description.study_instance_uid, attributes=PHI))
        with self.store.session() as session:
            study = Study(study_uid=description.study_instance_uid, patient_id=PHI["PatientID"], patient_name=PHI["PatientName"],
                          source="dimse:PACS", status="screened", series_uid=description.series_instance_uid, study_date="20200201",
                          model_name="ctscreen-screening", model_version=3, probability=0.91, positive=finding == "covid" or verdict == "corrected",
                          threshold=0.5, lesion_ml=12.5, lung_ml=3100.0, verdict=verdict, verdict_finding=finding,
                          missed_lesions=missed_lesions, verdict_note=NOTE, verdict_by=PHYSICIAN, verdict_at=datetime(2020, 2, 2, 9, 30))
            for path in files + scout:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                study.instances.append(Instance(sop_uid=ds.SOPInstanceUID, sop_class=CT_IMAGE, series_uid=ds.SeriesInstanceUID,
                                                sha256="-", path=str(path)))
            session.add(study)
        volume = load_volume(series)
        lesions = np.zeros(volume.hu.shape, np.uint8)
        lesions[3:5, 12:16, 8:12] = 1
        write_mask(volume, lesions, self.state / "results" / str(study.id) / "lesion_mask.nii.gz")
        write_mask(volume, (volume.hu < -500).astype(np.uint8), self.state / "results" / str(study.id) / "lung_mask.nii.gz")
        return study

    def case(self, study: Study) -> Outgoing:
        with self.store.session() as session:
            return session.query(Outgoing).filter(Outgoing.study_id == study.id).one()

    def set_case(self, study: Study, **fields) -> None:
        with self.store.session() as session:
            case = session.query(Outgoing).filter(Outgoing.study_id == study.id).one()
            for name, value in fields.items():
                setattr(case, name, value)


@pytest.fixture
def central(tmp_path):
    intake = tmp_path / "central" / "intake"
    intake.mkdir(parents=True)
    return intake


@pytest.fixture
def site(tmp_path, central):
    site = Site(tmp_path / "site", central)
    yield site
    site.store.close()


def delivered(intake) -> list[str]:
    return sorted(p.name for p in intake.iterdir())


def no_phi_in(folder) -> None:
    """Not one of the study's identities, the physician's name or note, nor the original UIDs, in any byte."""
    needles = [*PHI.values(), "Quincy", "Kildare", "compare with", "Elsewhere", "20200201", "20200202"]
    for path in (p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, (path, needle)


def test_a_confirmed_case_reaches_central_deidentified_and_central_accepts_it(site, central):
    study = site.screened_study()
    queued = site.queue.enqueue(study.id)
    assert queued.state == "pending" and site.queue.pending() == 1
    assert site.queue.deliver_due() == 1
    case = site.case(study)
    assert case.state == "sent" and case.sent_at is not None and case.last_error is None and site.queue.pending() == 0
    assert delivered(central) == [case.case_id]
    package = central / case.case_id
    assert {p.name for p in package.iterdir()} == {"image", "lesion_mask.nii.gz", "lung_mask.nii.gz", "manifest.csv", "case.json"}
    assert len(list((package / "image").rglob("*.dcm"))) == 8  # the screened series alone, not the scout beside it
    assert not (site.state / "outbox" / case.case_id).exists()  # nothing with or without PHI is left staged
    no_phi_in(package)
    for needle in (study.study_uid, study.series_uid):
        assert all(needle.encode() not in p.read_bytes() for p in package.rglob("*") if p.is_file())

    report = check_intake(central)
    assert report.rejected == [] and [r["case_id"] for r in report.accepted] == [case.case_id]
    row = report.accepted[0]
    assert (row["site"], row["scanner"], row["label"], row["subtype"], row["qc_status"]) == (SITE, "Scanner 9000", "positive", "covid", "")
    assert row["patient_id"].startswith("CTS-")  # the de-identified pseudonym, as in the DICOM
    facts = (package / "case.json").read_text()
    assert '"probability": 0.91' in facts and '"version": 3' in facts and '"finding": "covid"' in facts
    assert '"date": "20' in facts and "2020-02-02" not in facts  # shifted as the study's dates were


def test_case_id_is_stable_unlinkable_and_queued_once(site):
    key = site.queue.key
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert case_id_for(SITE, uid, key) == case_id_for(SITE, uid, key)
    assert case_id_for(SITE, uid, key) != case_id_for(SITE, uid, secrets.token_bytes(32))
    assert re.fullmatch(r"north-[0-9a-f]{16}", case_id_for(SITE, uid, key))
    assert re.fullmatch(r"st-mary-s-[0-9a-f]{16}", case_id_for("St Mary's", uid, key))
    study = site.screened_study(finding="healthy", verdict="corrected")
    first, second = site.queue.enqueue(study.id), site.queue.enqueue(study.id)
    assert first.id == second.id and first.case_id == case_id_for(SITE, study.study_uid, key) and site.queue.pending() == 1
    with site.store.session() as session:
        session.get(Study, study.id).verdict = None
    assert site.queue.enqueue(study.id) is None  # no verdict: no labelled case


def test_a_case_delivered_twice_is_one_case_at_central_and_never_overwritten(site, central):
    study = site.screened_study()
    site.queue.enqueue(study.id)
    assert site.queue.deliver_due() == 1
    case_id = site.case(study).case_id
    before = {p.relative_to(central): p.read_bytes() for p in central.rglob("*") if p.is_file()}
    site.set_case(study, state="pending", sent_at=None)  # as if the service stopped after the rename, before marking it sent
    assert site.queue.deliver_due() == 1
    assert site.case(study).state == "sent" and delivered(central) == [case_id]
    assert {p.relative_to(central): p.read_bytes() for p in central.rglob("*") if p.is_file()} == before

    with site.store.session() as session:
        session.get(Study, study.id).verdict_finding = "covid"
        session.get(Study, study.id).missed_lesions = True
    assert site.queue.enqueue(study.id).state == "sent"  # once sent, not sent again
    assert "after the case went to central, was not sent" in site.case(study).last_error
    site.set_case(study, state="pending", last_error=None)
    now = datetime(2030, 1, 1)
    assert site.queue.deliver_due(now) == 0
    case = site.case(study)
    assert case.state == "pending" and case.attempts == 1 and "other content" in case.last_error and case.next_attempt_at > now
    assert {p.relative_to(central): p.read_bytes() for p in central.rglob("*") if p.is_file()} == before


def test_a_verdict_changed_while_the_case_is_on_its_way_is_noted(site, central, monkeypatch):
    study = site.screened_study()
    site.queue.enqueue(study.id)
    deliver = site.queue._deliver

    def meanwhile(staging, case_id):
        with site.store.session() as session:
            session.get(Study, study.id).verdict_at = datetime(2020, 2, 3, 8, 0)
        deliver(staging, case_id)

    monkeypatch.setattr(site.queue, "_deliver", meanwhile)
    assert site.queue.deliver_due() == 1
    case = site.case(study)
    assert case.state == "sent" and "2020-02-03 08:00 UTC, after the case went to central, was not sent" in case.last_error


def test_central_away_means_retries_with_growing_backoff_and_no_partial_case_there(site, central, monkeypatch):
    study = site.screened_study()
    site.queue.enqueue(study.id)
    shutil.rmtree(central)  # the intake share is not mounted
    now = datetime(2030, 1, 1)
    assert site.queue.deliver_due(now) == 0
    first = site.case(study)
    assert (first.state, first.attempts) == ("pending", 1) and "not there" in first.last_error
    assert site.queue.deliver_due(now) == 0 and site.case(study).attempts == 1  # not due yet: not tried
    assert site.queue.deliver_due(first.next_attempt_at) == 0
    second = site.case(study)
    assert second.attempts == 2 and second.next_attempt_at - first.next_attempt_at > first.next_attempt_at - now

    central.mkdir()

    def disk_full(src, dst):
        (dst / "image").mkdir(parents=True)  # half a case written, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outbox.shutil, "copytree", disk_full)
    assert site.queue.deliver_due(second.next_attempt_at) == 0
    third = site.case(study)
    assert third.attempts == 3 and "No space left" in third.last_error
    assert list(central.iterdir()) == []  # no partial folder left at central
    monkeypatch.undo()
    assert site.queue.deliver_due(third.next_attempt_at) == 1
    assert site.case(study).state == "sent" and delivered(central) == [site.case(study).case_id]
    exposition = site.metrics.exposition().decode()
    assert 'ctscreen_edge_central_deliveries_total{result="retry",site="north"} 3.0' in exposition
    assert 'ctscreen_edge_central_deliveries_total{result="sent",site="north"} 1.0' in exposition


def test_a_case_whose_phi_audit_is_not_clean_is_refused_and_never_retried(site, central, monkeypatch):
    real = outbox.deidentify_study

    def regressed(src, dst, key, **options):
        """A de-identifier that leaves the patient's address in one file."""
        report = real(src, dst, key, **options)
        victim = sorted(dst.rglob("*.dcm"))[2]
        ds = pydicom.dcmread(victim)
        ds.PatientAddress = PHI["PatientAddress"]
        ds.save_as(victim)
        return report

    monkeypatch.setattr(outbox, "deidentify_study", regressed)
    study = site.screened_study()
    site.queue.enqueue(study.id)
    assert site.queue.deliver_due() == 0
    case = site.case(study)
    assert case.state == "refused" and "PHI audit not clean" in case.last_error and "Patient's Address" in case.last_error
    assert re.search(r"image/[0-9.]+/[0-9.]+\.dcm", case.last_error)  # which file
    assert list(central.iterdir()) == [] and not (site.state / "outbox" / case.case_id).exists()
    assert site.queue.deliver_due(datetime(2040, 1, 1)) == 0 and site.case(study).attempts == 0 and site.queue.pending() == 0


def test_images_that_may_show_text_are_withheld_so_the_case_is_refused(site, central):
    study = site.screened_study(attributes={"BurnedInAnnotation": "YES"})
    site.queue.enqueue(study.id)
    assert site.queue.deliver_due() == 0
    case = site.case(study)
    assert case.state == "refused" and "BurnedInAnnotation is YES" in case.last_error and re.search(r"ct/slice_\d{4}\.dcm", case.last_error)
    assert list(central.iterdir()) == []


def test_missed_lesions_flag_the_case_for_central_qc(site, central):
    study = site.screened_study(missed_lesions=True)
    site.queue.enqueue(study.id)
    assert site.queue.deliver_due() == 1
    report = check_intake(central)
    assert report.accepted == [] and len(report.rejected) == 1
    assert MISSED_LESIONS in report.rejected[0]["reason"] and report.rejected[0]["case_id"] == site.case(study).case_id


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The S3 server with central's bucket."""
    endpoint, client = s3_server
    client.create_bucket(Bucket="central")
    return endpoint, client


def test_s3_delivery_uploads_the_manifest_last_and_central_ingests_it(tmp_path, s3, monkeypatch):
    endpoint, client = s3
    url = f"s3://{endpoint}/central/intake"
    site = Site(tmp_path / "site", url)
    study = site.screened_study()
    site.queue.enqueue(study.id)
    uploads = []
    site.queue._client = site.queue.s3.client()
    put = site.queue._client.put_object
    monkeypatch.setattr(site.queue._client, "put_object", lambda **kw: uploads.append(kw["Key"]) or put(**kw))
    assert site.queue.deliver_due() == 1
    case_id = site.case(study).case_id
    assert uploads[-1] == f"intake/{case_id}/manifest.csv" and len(uploads) == 8 + 4
    site.set_case(study, state="pending")  # stopped before marking it sent: the ETags say central has it
    assert site.queue.deliver_due() == 1 and len(uploads) == 12

    with intake_folder(url) as folder:
        no_phi_in(folder)
        report = check_intake(folder)
        assert [r["case_id"] for r in report.accepted] == [case_id] and report.rejected == []

    from ctscreen.cli import main
    from ctscreen.dataset.repository import DatasetRepository

    DatasetRepository.create(tmp_path / "dataset", str(tmp_path / "remote"))
    assert main(["dataset", "ingest", url, "--dataset", str(tmp_path / "dataset"), "--json"]) == 0
    assert DatasetRepository.open(tmp_path / "dataset").version()["cases"] == 1
    site.store.close()


def test_s3_errors_name_no_credentials_and_urls_carry_none(tmp_path, s3):
    endpoint, _ = s3
    site = Site(tmp_path / "site", f"s3://{endpoint}/no-such-bucket/intake")
    study = site.screened_study()
    site.queue.enqueue(study.id)
    assert site.queue.deliver_due() == 0
    error = site.case(study).last_error
    assert "NoSuchBucket" in error and "ctscreen-secret" not in error
    with pytest.raises(InputError, match="credentials do not belong in the URL"):
        parse_s3_url("s3://key:secret@127.0.0.1:9000/central")
    location = parse_s3_url(f"s3://{endpoint}/central//intake/")
    assert (location.endpoint, location.bucket, location.key("a")) == (f"http://{endpoint}", "central", "intake/a")
    assert parse_s3_url("s3://central").key("a") == "a"
    site.store.close()
