"""A hospital, end to end: a synthetic study with PHI sent by C-STORE to the PACS (a real Orthanc),
forwarded by the PACS to the site's screening service, screened through the node's Triton (the
release its agent put in service), its SEG and SR stored in the PACS and valid; a physician opens
it in a real Chromium, sees the highlighted slices and the viewer's segmentation, and confirms it;
the confirmed case reaches central's intake de-identified and the retrain pipeline's ingest takes it."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ctscreen.cli import main
from ctscreen.dataset.intake import check_intake
from serving import daemons
from serving.edge.service.app import create_app
from serving.edge.service.service import EdgeService
from serving.edge.service.web import WebServer
from serving.edge.state import serving_version
from serving.pacs import orthanc
from serving.results.validation import dciodvfy_problems
from serving.viewer.app import viewer_router
from tests.serving.browser import chromium_driver, save_screenshot
from tests.serving.edge.service.conftest import PASSWORD, study_uid, synthetic_study, write_service_config

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK's storescu is not installed")
LOAD_S = 90


@pytest.fixture
def hospital(tmp_path, node, agent, monkeypatch):
    """The node's agent has a release in service; the PACS forwards CT to the site's receiver."""
    monkeypatch.setenv("CTSCREEN_HOME", str(tmp_path / "home"))
    receiver_port = daemons.free_port()
    pacs = orthanc.start(tmp_path / "pacs", aet="PACS", stable_age_s=1, modalities={"EDGE": ["CTSCREEN", "127.0.0.1", receiver_port]})
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "deid.key").write_text(secrets.token_hex(32))
    (tmp_path / "intake").mkdir()
    config, _ = write_service_config(
        tmp_path / "site", node["config"].state_dir, pacs, triton_url=node["triton"].http_url,
        receiver={"ae_title": "CTSCREEN", "port": receiver_port, "allowed_callers": ["PACS"]},
        central={"intake": str(tmp_path / "intake"), "deidentification_key_file": "deid.key"})
    try:
        with EdgeService(config, tick_s=0.1) as service:
            web = WebServer.for_site(create_app(service, viewer_router(None, pacs.dicomweb_url, pacs.auth)), config.web).start()
            yield {"service": service, "web": web, "pacs": pacs, "intake": tmp_path / "intake", "root": tmp_path}
            web.stop()
    finally:
        orthanc.stop(tmp_path / "pacs")


def _authenticated(driver, user: str, password: str) -> None:
    """Every request of the browser carries the physician's credentials (as after a login prompt)."""
    driver.execute_cdp_cmd("Network.enable", {})
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})


def test_a_study_from_the_pacs_to_a_confirmed_case_at_central(central, node, agent, hospital, tmp_path):
    if serving_version(node["config"].state_dir) is None:
        central.store.publish("stable", 1)
        agent.poll_once()
    version = serving_version(node["config"].state_dir)
    service, pacs = hospital["service"], hospital["pacs"]

    folder = synthetic_study(tmp_path / "case")
    uid = study_uid(folder)
    sent = subprocess.run(["storescu", "-aet", "CT1", "-aec", "PACS", "127.0.0.1", str(pacs.dicom_port), *map(str, sorted(folder.iterdir()))],
                          capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    with pacs.client() as client:
        orthanc_id = client.post("/tools/lookup", content=uid).json()[0]["ID"]
        assert client.post("/modalities/EDGE/store", json={"Resources": [orthanc_id], "Synchronous": True}).status_code == 200

    deadline = time.monotonic() + 300
    while not (studies := [s for s in service.store.studies() if s.study_uid == uid and s.status == "screened"]):
        assert time.monotonic() < deadline, [(s.status, s.reason) for s in service.store.studies()]
        time.sleep(0.2)
    study = studies[0]
    assert (study.served_by, study.model_version, study.reason) == ("triton", version, None)

    with pacs.client() as client:
        series = [client.get(f"/series/{s}").json() for s in client.get(f"/studies/{orthanc_id}").json()["Series"]]
        files = {s["MainDicomTags"]["Modality"]: client.get(f"/instances/{s['Instances'][0]}/file").content for s in series}
    assert {"CT", "SEG", "SR"} == set(files)
    for modality in ("SEG", "SR"):
        (tmp_path / f"{modality}.dcm").write_bytes(files[modality])
        assert dciodvfy_problems(tmp_path / f"{modality}.dcm") == [], modality

    url = hospital["web"].url
    with chromium_driver() as driver:
        wait = WebDriverWait(driver, LOAD_S)
        _authenticated(driver, "dr.who", PASSWORD)
        driver.get(url + "/")
        row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-study="{study.id}"]'))[0]
        assert "screened" in row.text and f"v{version}" in row.text
        save_screenshot(driver, "edge-1-worklist")
        row.find_element(By.TAG_NAME, "a").click()
        images = wait.until(lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "img.key-slice")
                                       if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)])
        assert images and "physician must confirm" in driver.find_element(By.TAG_NAME, "body").text
        save_screenshot(driver, "edge-2-study-with-highlighted-slices")
        driver.find_element(By.ID, "confirm").click()
        wait.until(lambda d: d.find_elements(By.ID, "verdict"))
        save_screenshot(driver, "edge-3-confirmed")

        driver.get(driver.find_element(By.ID, "open-viewer").get_attribute("href"))
        wait.until(lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, "[data-cy=study-browser-thumbnail-no-image]") if "SEG" in t.text])
        save_screenshot(driver, "edge-4-viewer-with-segmentation")
    confirmed = service.store.study(study.id)
    assert confirmed.verdict == "confirmed" and confirmed.verdict_by == "dr.who"

    deadline = time.monotonic() + 120
    while not list(hospital["intake"].glob("*/manifest.csv")):
        assert time.monotonic() < deadline, "the confirmed case did not reach central"
        time.sleep(0.2)
    report = check_intake(hospital["intake"])
    assert len(report.accepted) == 1 and report.rejected == []
    delivered = b"".join(p.read_bytes() for p in hospital["intake"].rglob("*") if p.is_file())
    assert confirmed.patient_name.encode() not in delivered and confirmed.patient_id.encode() not in delivered and uid.encode() not in delivered

    dataset = tmp_path / "dataset"
    assert main(["dataset", "init", "--dataset", str(dataset), "--remote", str(tmp_path / "remote"), "--json"]) == 0
    assert main(["dataset", "ingest", str(hospital["intake"]), "--dataset", str(dataset), "--json"]) == 0
    assert main(["dataset", "version", "--dataset", str(dataset), "--json"]) == 0
    assert json.loads((dataset / "split.json").read_text())  # the case joined the dataset's split
