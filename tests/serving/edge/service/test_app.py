"""The worklist, study pages, API and metrics of a site, over HTTP, with authentication: one
screened study and one that could not be screened."""

from __future__ import annotations

import base64
import re
import ssl
import time

import httpx
import pytest

from serving.edge.service.app import create_app
from serving.edge.service.service import EdgeService
from serving.edge.service.web import WebServer
from serving.pacs.sender import send_instances
from tests.serving.edge.service.conftest import PASSWORD, study_uid, synthetic_study, write_service_config

ENDPOINTS = ["/", "/?status=screened", "/studies/1", "/studies/1/slices/0.png", "/api/studies", "/api/studies/1", "/metrics",
             "/viewer/", "/viewer/dicom-web/studies"]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def site(tmp_path_factory, released_node, site_pacs):
    root = tmp_path_factory.mktemp("site")
    config, token = write_service_config(root, released_node, site_pacs, triton_url=None)
    with EdgeService(config, tick_s=0.1) as service:
        web = WebServer.for_site(create_app(service), config.web).start()
        good = synthetic_study(root / "good")
        mr = synthetic_study(root / "mr", index=1)
        for path in mr.iterdir():  # another modality: an MR study through the same door
            import pydicom
            ds = pydicom.dcmread(path)
            ds.Modality = "MR"
            ds.save_as(path)
        for folder in (good, mr):
            send_instances(sorted(folder.iterdir()), "127.0.0.1", service.receiver.port, "CTSCREEN", "PACS")
        deadline = time.monotonic() + 300
        while sum(c for s, c in service.store.count_by_status().items() if s in ("screened", "not_screenable")) < 2:
            assert time.monotonic() < deadline, service.store.count_by_status()
            time.sleep(0.2)
        ids = {s.study_uid: s.id for s in service.store.studies()}
        yield {"service": service, "url": web.url, "token": token, "good": ids[study_uid(good)], "mr": ids[study_uid(mr)]}
        web.stop()


@pytest.fixture
def doctor(site):
    with httpx.Client(base_url=site["url"], headers=basic("dr.who", PASSWORD), timeout=30) as client:
        yield client


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("credentials", [None, basic("dr.who", "wrong password!"), basic("nobody", PASSWORD), {"Authorization": "Bearer nope"}])
def test_every_endpoint_refuses_an_unauthenticated_caller(site, path, credentials):
    answer = httpx.get(site["url"] + path, headers=credentials or {}, timeout=30)
    assert answer.status_code == 401 and "www-authenticate" in answer.headers
    assert "Patient" not in answer.text and PASSWORD not in answer.text


def test_health_needs_no_credentials_and_says_nothing_of_studies(site):
    answer = httpx.get(site["url"] + "/healthz", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"ok": True}


def test_the_worklist_shows_studies_newest_first_filterable_by_status(site, doctor):
    page = doctor.get("/").text
    rows = re.findall(r'data-study="(\d+)" data-status="(\w+)"', page)
    assert [int(i) for i, _ in rows] == sorted((site["good"], site["mr"]), reverse=True)
    assert dict((int(i), s) for i, s in rows) == {site["good"]: "screened", site["mr"]: "not_screenable"}
    screened = doctor.get("/", params={"status": "screened"}).text
    assert re.findall(r'data-study="(\d+)"', screened) == [str(site["good"])]
    assert "no CT image series found (modalities present: MR)" in doctor.get("/", params={"status": "not_screenable"}).text  # the reason, shown


def test_the_study_page_shows_key_slices_and_records_a_verdict(site, doctor):
    study = site["service"].store.study(site["good"])
    page = doctor.get(f"/studies/{study.id}").text
    slices = re.findall(r'/studies/\d+/slices/(\d+)\.png', page)
    assert slices and "physician must confirm" in page
    image = doctor.get(f"/studies/{study.id}/slices/{slices[0]}.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert doctor.get(f"/studies/{study.id}/slices/9999.png").status_code == 404

    finding = "covid" if study.positive else "healthy"
    wrong = doctor.post(f"/studies/{study.id}/verdict", data={"verdict": "corrected", "finding": finding})
    assert wrong.status_code == 400  # a 'correction' that agrees with the model
    answer = doctor.post(f"/studies/{study.id}/verdict", data={"verdict": "confirmed", "finding": finding, "note": "agree"})
    assert answer.status_code == 303
    stored = site["service"].store.study(study.id)
    assert (stored.verdict, stored.verdict_finding, stored.verdict_by) == ("confirmed", finding, "dr.who")
    metrics = doctor.get("/metrics").text
    assert 'ctscreen_edge_verdicts_total{agreement="agree",site="hospital-a"} 1.0' in metrics
    assert 'ctscreen_edge_physician_agreement{site="hospital-a"} 1.0' in metrics
    assert doctor.post(f"/studies/{site['mr']}/verdict", data={"verdict": "confirmed", "finding": "covid"}).status_code == 400


def test_a_cross_site_form_post_is_refused(site, doctor):
    answer = doctor.post(f"/studies/{site['good']}/verdict", data={"verdict": "confirmed", "finding": "covid"},
                         headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403


def test_the_api_and_metrics_take_a_token(site):
    headers = {"Authorization": f"Bearer {site['token']}"}
    studies = httpx.get(site["url"] + "/api/studies", headers=headers, timeout=30).json()
    assert {s["status"] for s in studies} == {"screened", "not_screenable"}
    metrics = httpx.get(site["url"] + "/metrics", headers=headers, timeout=30).text
    for line in ('ctscreen_edge_not_screenable_total{reason="not-ct",site="hospital-a"} 1.0',
                 'ctscreen_edge_studies{site="hospital-a",status="screened"} 1.0',
                 'ctscreen_edge_instances_received_total{site="hospital-a",source="dimse"}',
                 'ctscreen_edge_stage_seconds_count{site="hospital-a",stage="infer"} 1.0',
                 'ctscreen_edge_input_scanner_total', 'ctscreen_edge_input_lung_hu_mean_count{site="hospital-a"} 1.0',
                 'ctscreen_edge_queue_length{queue="screening",site="hospital-a"} 0.0', 'ctscreen_serving_fallback_total'):
        assert line in metrics, line
    assert site["token"] not in metrics


def _self_signed(folder):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .sign(key, hashes.SHA256()))
    (folder / "site.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "site.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return folder / "site.crt"


def test_tls_by_configuration_for_a_site_without_a_proxy(tmp_path, released_node, caplog):
    folder = tmp_path / "site"
    folder.mkdir()
    certificate = _self_signed(folder)
    config, token = write_service_config(folder, released_node, triton_url=None, web={
        "address": "127.0.0.1:0", "users_file": "users.yaml", "tokens_file": "tokens.yaml", "tls_certificate": "site.crt", "tls_key": "site.key"})
    with caplog.at_level("DEBUG"), EdgeService(config) as service:
        web = WebServer.for_site(create_app(service), config.web).start()
        try:
            assert web.url.startswith("https://")
            with httpx.Client(verify=ssl.create_default_context(cafile=str(certificate)), timeout=30) as client:
                assert client.get(web.url + "/api/studies", headers=basic("dr.who", PASSWORD)).json() == []
                assert client.get(web.url + "/api/studies", headers=basic("dr.who", "not the password")).status_code == 401
                assert client.get(web.url + "/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        finally:
            web.stop()
    assert PASSWORD not in caplog.text and token not in caplog.text and "not the password" not in caplog.text
