"""The site's service with a real PACS: studies pushed by DCMTK's storescu and our sender, screened
once complete, their SEG and SR stored back in Orthanc and valid; bad input recorded, not fatal."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pydicom
import pytest

from ctscreen.imaging.readers import load_volume
from serving.edge.service.service import EdgeService
from serving.edge.service.store import Status
from serving.pacs.sender import send_instances
from serving.results.seg import read_segmentation_mask
from serving.results.source import read_source_series, mask_on_source
from serving.results.validation import dciodvfy_problems
from tests.serving.edge.service.conftest import study_uid, synthetic_study, write_service_config

DCMTK = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK's storescu is not installed")


def storescu(port: int, folder, calling: str = "STORESCU"):
    return subprocess.run(["storescu", "-aet", calling, "-aec", "CTSCREEN", "127.0.0.1", str(port), *map(str, sorted(folder.iterdir()))],
                          capture_output=True, text=True, timeout=120)


def wait_for(service: EdgeService, uid: str, statuses=(Status.screened, Status.not_screenable, Status.failed), timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for study in service.store.studies():
            if study.study_uid == uid and study.status in {s.value for s in statuses}:
                return study
        time.sleep(0.2)
    raise AssertionError(f"study {uid} not done: {[(s.study_uid, s.status, s.reason) for s in service.store.studies()]}")


@pytest.fixture
def service(tmp_path, released_node, site_pacs):
    config, _ = write_service_config(tmp_path / "site", released_node, site_pacs, triton_url=None)
    with EdgeService(config, tick_s=0.1) as running:
        yield running


def orthanc_study(pacs, uid: str) -> dict:
    with pacs.client() as client:
        found = client.post("/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": uid}, "Expand": True}).json()
        assert found, f"study {uid} is not in the PACS"
        series = [client.get(f"/series/{s}").json() for s in found[0]["Series"]]
        return {s["MainDicomTags"]["Modality"]: client.get(f"/instances/{s['Instances'][0]}/file").content for s in series}


@DCMTK
def test_a_study_sent_by_storescu_is_screened_once_and_its_seg_and_sr_land_in_the_pacs(service, site_pacs, tmp_path):
    folder = synthetic_study(tmp_path / "case")
    uid = study_uid(folder)
    sent = storescu(service.receiver.port, folder)
    assert sent.returncode == 0, sent.stderr
    study = wait_for(service, uid)
    assert study.status == Status.screened.value, study.reason
    assert "in process" in study.reason  # no Triton here: said, not hidden
    assert 0 <= study.probability <= 1 and study.model_version == 1 and study.patient_name

    stored = orthanc_study(site_pacs, uid)
    assert {"SEG", "SR"} <= set(stored)  # filed under the study the scanner sent
    for modality in ("SEG", "SR"):
        path = tmp_path / f"{modality}.dcm"
        path.write_bytes(stored[modality])
        assert dciodvfy_problems(path) == [], modality
    seg = pydicom.dcmread(tmp_path / "SEG.dcm")
    sources = read_source_series(folder, study.series_uid)
    lesions = load_volume(service.screener.results_dir(study.id) / "lesion_mask.nii.gz").hu.astype(np.uint8)
    volume = load_volume(folder)
    np.testing.assert_array_equal(read_segmentation_mask(seg, sources)["Lesion"], mask_on_source(lesions, volume, sources))

    send_instances(sorted(folder.iterdir()), "127.0.0.1", service.receiver.port, "CTSCREEN", "PACS")  # the same study again
    time.sleep(1.5)  # past the quiet period
    service.arrivals.complete()
    again = service.store.study(study.id)
    assert again.status == Status.screened.value and again.screenings == 1


def _missing_slice(folder):
    sorted(folder.iterdir())[len(list(folder.iterdir())) // 2].unlink()


def _corrupt_file(folder):
    path = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = ["0.7"]  # one value where two must be
    ds.save_as(path)


def _scout_only(folder):
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(path)


@pytest.mark.parametrize("damage, reason, label", [
    (_missing_slice, "missing", "missing-slices"),
    (_corrupt_file, "PixelSpacing has 1 value(s), expected 2", "corrupt"),
    (_scout_only, "no CT image series", "not-ct"),
])
def test_a_study_that_cannot_be_screened_is_recorded_with_its_reason_and_the_next_goes_on(service, tmp_path, damage, reason, label):
    bad, good = synthetic_study(tmp_path / "bad", index=1), synthetic_study(tmp_path / "good", index=2)
    damage(bad)
    for folder in (bad, good):
        send_instances(sorted(folder.iterdir()), "127.0.0.1", service.receiver.port, "CTSCREEN", "PACS")
    refused = wait_for(service, study_uid(bad))
    assert refused.status == Status.not_screenable.value and reason in refused.reason, refused.reason
    assert wait_for(service, study_uid(good)).status == Status.screened.value
    assert service.metrics.not_screenable.labels("hospital-a", label)._value.get() == 1


@DCMTK
def test_an_unknown_calling_ae_title_is_refused_and_nothing_is_recorded(service, tmp_path):
    sent = storescu(service.receiver.port, synthetic_study(tmp_path / "case"), calling="STRANGER")
    assert sent.returncode != 0
    assert service.store.studies() == [] and not any(service.spool.iterdir())
    assert service.metrics.refused_callers.labels("hospital-a")._value.get() >= 1


def test_a_study_interrupted_mid_screening_is_screened_again_on_restart(tmp_path, released_node, site_pacs):
    config, _ = write_service_config(tmp_path / "site", released_node, site_pacs, triton_url=None)
    folder = synthetic_study(tmp_path / "case")
    service = EdgeService(config, tick_s=0.1)
    service.receiver.start()  # receiving, but no worker: the study waits
    send_instances(sorted(folder.iterdir()), "127.0.0.1", service.receiver.port, "CTSCREEN", "PACS")
    time.sleep(0.6)
    service.arrivals.complete()
    study_id = service.arrivals.next_queued()  # taken by a worker that is then killed
    assert service.store.study(study_id).status == Status.screening.value
    service.stop()

    with EdgeService(config, tick_s=0.1) as restarted:
        study = wait_for(restarted, study_uid(folder))
        assert study.status == Status.screened.value and study.screenings == 1
        assert len(restarted.store.studies()) == 1
        with restarted.store.session() as session:
            from serving.edge.service.store import Instance
            assert session.query(Instance).count() == len(list(folder.iterdir()))  # each instance stored once
