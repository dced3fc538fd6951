"""`ctscreen edge serve` as a site runs it, for a PACS that does not push: the service polls the
PACS's DICOMweb (QIDO-RS, WADO-RS) for new CT studies, screens them, and stores the SEG and SR back
by STOW-RS; its pages answer on the configured address; SIGTERM stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from serving import daemons
from serving.pacs.dicomweb import DicomWebClient
from tests.serving.edge.service.conftest import PASSWORD, study_uid, synthetic_study, write_service_config
from tests.serving.edge.service.test_app import basic


@pytest.fixture
def serve(tmp_path, released_node, site_pacs):
    port = daemons.free_port()
    config, token = write_service_config(tmp_path / "site", released_node, site_pacs, triton_url=None, receiver=None,
                                         poll={"url": site_pacs.dicomweb_url, "username": site_pacs.user, "password_file": "pacs.password"},
                                         poll_interval_s=0.5, web={"address": f"127.0.0.1:{port}", "users_file": "users.yaml"})
    settings = yaml.safe_load((tmp_path / "site" / "service.yaml").read_text())
    settings.pop("results_to")  # results by STOW-RS to `pacs`
    (tmp_path / "site" / "service.yaml").write_text(yaml.safe_dump(settings))
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "ctscreen.cli", "edge", "serve", "--config", str(tmp_path / "site" / "service.yaml")],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
        time.sleep(0.3)
    yield {"url": url, "process": process, "log": tmp_path / "serve.log"}
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_a_study_in_the_pacs_is_polled_screened_and_its_results_stored_by_stow(serve, site_pacs, tmp_path):
    folder = synthetic_study(tmp_path / "case", index=4)
    uid = study_uid(folder)
    with DicomWebClient(site_pacs.dicomweb_url, site_pacs.auth) as pacs:
        pacs.store(sorted(folder.iterdir()))
        deadline = time.monotonic() + 300
        while {s["Modality"] for s in pacs.series(uid)} != {"CT", "SEG", "SR"}:
            assert time.monotonic() < deadline, serve["log"].read_text()[-3000:]
            time.sleep(0.5)
    with httpx.Client(base_url=serve["url"], headers=basic("dr.who", PASSWORD), timeout=30) as client:
        [study] = [s for s in client.get("/api/studies").json() if s["study_uid"] == uid]
        assert study["status"] == "screened" and study["sr_uid"] and study["seg_uid"]
    serve["process"].send_signal(signal.SIGTERM)
    assert serve["process"].wait(timeout=60) == 0
    text = serve["log"].read_text()
    assert "worklist on http://127.0.0.1" in text and site_pacs.password not in text and PASSWORD not in text
