"""The DICOMweb client against Orthanc (STOW, QIDO, WADO) and against a loopback server answering
what a broken or hostile PACS might."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest
from pydicom.uid import generate_uid

from serving import daemons
from serving.pacs.dicomweb import DicomWebClient, _MultipartFiles
from serving.pacs.errors import PacsError
from tests.serving.pacs.conftest import assert_same_instances


@pytest.fixture
def web(pacs):
    with DicomWebClient(pacs.dicomweb_url, auth=pacs.auth) as client:
        yield client


@pytest.mark.parametrize("syntax", ["explicit", "rle"])
def test_stow_qido_wado_round_trip(web, series, tmp_path, syntax):
    sent = series(syntax)
    web.store(sent)
    study_uid = pydicom.dcmread(sent[0]).StudyInstanceUID
    [study] = web.studies(StudyInstanceUID=study_uid)
    assert study["StudyInstanceUID"] == study_uid
    assert study["NumberOfStudyRelatedInstances"] == len(sent)
    assert study["ModalitiesInStudy"] == ["CT"]
    assert study["StudyDate"] == "20200201"
    assert study["PatientName"] == "Doe^Jane"
    assert any(s["StudyInstanceUID"] == study_uid for s in web.studies(PatientID="PID-0042", limit=50))
    assert any(s["StudyInstanceUID"] == study_uid for s in web.studies(ModalitiesInStudy=["CT"]))
    [one] = web.series(study_uid)
    assert one["SeriesInstanceUID"] == pydicom.dcmread(sent[0]).SeriesInstanceUID and one["Modality"] == "CT"
    retrieved = web.retrieve_study(study_uid, tmp_path / "retrieved")
    assert sorted(p.name for p in retrieved) == sorted(f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in sent)
    assert sorted((tmp_path / "retrieved").iterdir()) == sorted(retrieved)  # no partial files left
    assert_same_instances(retrieved, sent)


def test_stow_datasets(web, series):
    datasets = [pydicom.dcmread(p) for p in series(slices=2)]
    web.store(datasets)
    [study] = web.studies(StudyInstanceUID=datasets[0].StudyInstanceUID)
    assert study["NumberOfStudyRelatedInstances"] == 2


def test_unknown_study(web, tmp_path):
    """A search that matches nothing is empty; retrieving what is not there is an error."""
    uid = generate_uid()
    assert web.studies(StudyInstanceUID=uid) == []
    assert web.series(uid) == []
    with pytest.raises(PacsError, match=rf"GET {web.url}/studies/{uid}: HTTP 404, not found"):
        web.retrieve_study(uid, tmp_path / "none")
    assert list((tmp_path / "none").iterdir()) == []


def test_wrong_credentials_never_shown(pacs, caplog, series, tmp_path):
    password = "s3cret-Password-XYZ"
    caplog.set_level(logging.DEBUG)
    with DicomWebClient(pacs.dicomweb_url, auth=(pacs.user, password)) as client:
        for call in (lambda: client.studies(), lambda: client.store(series(slices=1)),
                     lambda: client.retrieve_study(generate_uid(), tmp_path)):
            with pytest.raises(PacsError, match="HTTP 401, credentials refused") as refused:
                call()
            assert password not in str(refused.value) and pacs.password not in str(refused.value)
    assert password not in caplog.text and pacs.password not in caplog.text


def test_credentials_refused_in_the_url(pacs):
    with pytest.raises(ValueError, match="as auth"):
        DicomWebClient(f"http://{pacs.user}:{pacs.password}@127.0.0.1:{pacs.http_port}/dicom-web")


def test_nobody_listening():
    url = f"http://127.0.0.1:{daemons.free_port()}/dicom-web"
    with DicomWebClient(url, timeout=5) as client, pytest.raises(PacsError, match=f"GET {url}/studies: ConnectError"):
        client.studies(PatientName="Doe^Jane")


def test_query_kept_out_of_messages(pacs):
    with DicomWebClient(pacs.dicomweb_url) as client, pytest.raises(PacsError) as refused:
        client.studies(PatientName="Doe^Jane")
    assert "Doe" not in str(refused.value)


class Canned:
    """A loopback HTTP server answering every request with ``status``, ``headers`` and ``body``."""

    def __init__(self):
        self.status, self.headers, self.body = 200, {}, b""
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(canned.status)
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, status=200, body=b"", **headers):
        self.status, self.body = status, body
        self.headers = {name.replace("_", "-"): value for name, value in headers.items()}


@pytest.fixture(scope="module")
def canned():
    server = Canned()
    yield server
    server.server.shutdown()
    server.server.server_close()


def multipart(boundary: bytes, *parts: bytes, close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


@pytest.mark.parametrize("status, body, headers, message", [
    (500, b'{"Details": "database full"}', {"content_type": "application/json"}, "HTTP 500: database full"),
    (200, b"<html>", {"content_type": "text/html"}, "expected a multipart/related response"),
    (200, b"", {"content_type": "multipart/related; type=application/dicom"}, "with a boundary"),
    (200, "truncated", {}, "malformed multipart response .it ends inside part 1"),
    (200, "not dicom", {}, "part 1 is not a DICOM file"),
    (200, "wrong type", {}, "part 1 is text/plain, not application/dicom"),
])
def test_malformed_wado_responses(canned, series, tmp_path, status, body, headers, message):
    dicom = series(slices=1)[0].read_bytes()
    boundary = b"b0undary"
    multipart_type = {"content_type": 'multipart/related; type="application/dicom"; boundary="b0undary"'}
    body = {"truncated": lambda: multipart(boundary, dicom, close=False)[:-40],
            "not dicom": lambda: multipart(boundary, b"hello"),
            "wrong type": lambda: b"--b0undary\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b0undary--\r\n"}.get(body, lambda: body)()
    canned.answer(status, body, **(headers or multipart_type))
    with DicomWebClient(canned.url) as client, pytest.raises(PacsError, match=message):
        client.retrieve_study("1.2.3", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_stow_failures_are_named(canned, series):
    sent = series(slices=3)
    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in sent]
    ref = lambda uid, **more: {"00081155": {"vr": "UI", "Value": [uid]}, **more}  # noqa: E731
    canned.answer(409, json.dumps({
        "00081198": {"vr": "SQ", "Value": [ref(uids[0], **{"00081197": {"vr": "US", "Value": [0xA700]}})]},
        "00081199": {"vr": "SQ", "Value": [ref(uids[1])]},
    }).encode(), content_type="application/dicom+json")
    with DicomWebClient(canned.url) as client, pytest.raises(PacsError) as failed:
        client.store(sent)
    assert f"HTTP 409, 2 of 3 instances not stored: {uids[0]} (failure reason 0xA700), {uids[2]} (not acknowledged)" in str(failed.value)


@pytest.mark.parametrize("chunk", [1, 5, 17, 4096, 1 << 20])
def test_multipart_split_across_any_chunks(tmp_path, series, chunk):
    """Preamble, transport padding after a boundary, a part without headers, an epilogue."""
    files = series(slices=3)
    boundary = b"--=_sep"
    body = (b"preamble to ignore\r\n--" + boundary + b"  \r\nContent-Type: application/dicom\r\n\r\n" + files[0].read_bytes()
            + b"\r\n--" + boundary + b"\r\n\r\n" + files[1].read_bytes()
            + b"\r\n--" + boundary + b"\r\nContent-Type: application/dicom\r\nContent-Length: 9\r\n\r\n" + files[2].read_bytes()
            + b"\r\n--" + boundary + b"--\r\nepilogue")
    splitter = _MultipartFiles(boundary, tmp_path, "test")
    for start in range(0, len(body), chunk):
        splitter.feed(body[start:start + chunk])
    splitter.finish()
    assert_same_instances(splitter.place(), files)
