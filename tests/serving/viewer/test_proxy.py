"""The viewer's routes over HTTP: OHIF's files under the prefix, and the PACS (a real Orthanc) through
the proxy, which must neither hand out the PACS's password nor pass on the browser's credentials."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pydicom
import pytest

from serving import daemons
from serving.edge.service.web import WebServer
from tests.serving.viewer.conftest import PREFIX, viewer_app

ISOLATION = {"cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp"}
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@pytest.fixture
def browser(viewer):
    """What a browser would be: a client of the viewer only, holding no PACS credentials."""
    with httpx.Client(base_url=viewer.url, trust_env=False, timeout=30) as client:
        yield client


def _bulk_uris(value) -> list[str]:
    if isinstance(value, dict):
        return ([value["BulkDataURI"]] if "BulkDataURI" in value else []) + [u for v in value.values() for u in _bulk_uris(v)]
    if isinstance(value, list):
        return [u for v in value for u in _bulk_uris(v)]
    return []


def _first_instance(browser, study, series_uid: str) -> str:
    instances = browser.get(f"{PREFIX}/dicom-web/studies/{study.study_uid}/series/{series_uid}/instances").json()
    return instances[0]["00080018"]["Value"][0]


def test_app_config_is_the_generated_one(browser):
    response = browser.get(f"{PREFIX}/app-config.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert 'window.location.origin + "/viewer"' in response.text and "'/dicom-web'" in response.text and "'/wado'" in response.text
    assert '"routerBasename": "/viewer"' in response.text
    assert "cloudfront" not in response.text  # dist's own, pointed at OHIF's public demo server, is not what is served


@pytest.mark.parametrize("path", ["", "/", "/viewer?StudyInstanceUIDs=1.2.3", "/segmentation/deep/route"])
def test_spa_paths_answer_index_html(browser, path):
    response = browser.get(PREFIX + path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert 'window.PUBLIC_URL="/viewer/"' in response.text and 'src="/viewer/app-config.js"' in response.text


def test_missing_assets_and_the_service_worker_are_not_found(browser):
    for path in ("/9999.bundle.0000.js", "/assets/nothing.png", "/sw.js"):
        response = browser.get(PREFIX + path)
        assert response.status_code == 404 and "<html" not in response.text, path
    assert browser.get("/").json() == {"page": "worklist"}  # the root is the edge's own


def test_wasm_type_and_cross_origin_isolation(browser, dist, study):
    wasm = sorted(dist.glob("*.wasm"))[0]
    response = browser.get(f"{PREFIX}/{wasm.name}")
    assert response.headers["content-type"] == "application/wasm" and response.content == wasm.read_bytes()
    for path in (f"/{wasm.name}", "/", "/app-config.js", "/app.bundle.css", f"/dicom-web/studies/{study.study_uid}/series"):
        headers = browser.get(PREFIX + path).headers
        assert {name: headers.get(name) for name in ISOLATION} == ISOLATION, path


def test_only_content_hashed_names_are_cached_for_good(browser, dist):
    wasm = sorted(dist.glob("*.wasm"))[0].name
    bundle = browser.get(f"{PREFIX}/").text.split('<script defer src="')[1].split('"')[0]
    for path, cached in ((f"{PREFIX}/{wasm}", True), (bundle, True), (f"{PREFIX}/", False), (f"{PREFIX}/app-config.js", False),
                         (f"{PREFIX}/app.bundle.css", False), (f"{PREFIX}/assets/favicon.ico", False)):
        assert ("immutable" in browser.get(path).headers["cache-control"]) is cached, path


def test_bundles_load_their_chunks_from_under_the_prefix(browser, dist):
    index = browser.get(f"{PREFIX}/").text
    bundle = index.split('<script defer src="')[1].split('"')[0]
    assert bundle.startswith(f"{PREFIX}/app.bundle.")
    assert '__webpack_require__.p = "/viewer/";' in browser.get(bundle).text
    assert "url(/viewer/" in browser.get(f"{PREFIX}/app.bundle.css").text
    assert '__webpack_require__.p = "/";' in (dist / bundle.removeprefix(f"{PREFIX}/")).read_text()  # dist/ untouched


def test_qido_lists_the_study_through_the_proxy(browser, viewer, study):
    studies = browser.get(f"{PREFIX}/dicom-web/studies", params={"PatientID": "VIEWER-0001"}, headers={"Accept": "application/dicom+json"})
    assert studies.status_code == 200 and studies.headers["content-type"].startswith("application/dicom+json")
    [found] = studies.json()
    assert found["0020000D"]["Value"] == [study.study_uid]
    assert found["00081190"]["Value"] == [f"{viewer.url}{PREFIX}/dicom-web/studies/{study.study_uid}"]
    series = browser.get(f"{PREFIX}/dicom-web/studies/{study.study_uid}/series").json()
    assert sorted(s["00080060"]["Value"][0] for s in series) == ["CT", "SEG"]


def test_study_list_fields_asked_as_browsers_encode_them(browser, study):
    """OHIF asks for "includefield=00081030%2C00080060": Orthanc 1.10 answers it only unencoded."""
    [found] = browser.get(f"{PREFIX}/dicom-web/studies?PatientID=VIEWER-0001&includefield=00081030%2C00080060").json()
    assert found["00081030"]["Value"] == ["CT chest (viewer test)"]


def test_metadata_bulkdata_uris_point_back_through_the_proxy(browser, viewer, pacs, study):
    response = browser.get(f"{PREFIX}/dicom-web/studies/{study.study_uid}/series/{study.ct_series_uid}/metadata")
    assert response.status_code == 200 and pacs.url not in response.text
    uris = _bulk_uris(response.json())
    assert len(uris) >= 20 and all(uri.startswith(f"{viewer.url}{PREFIX}/dicom-web/studies/{study.study_uid}/") for uri in uris)
    bulk = browser.get(uris[0])
    assert bulk.status_code == 200 and bulk.headers["content-type"].startswith("multipart/related")


def test_frames_stream_through_whole(browser, study):
    instance = _first_instance(browser, study, study.ct_series_uid)
    frames = browser.get(f"{PREFIX}/dicom-web/studies/{study.study_uid}/series/{study.ct_series_uid}/instances/{instance}/frames/1",
                         headers={"Accept": FRAME_ACCEPT})
    assert frames.status_code == 200 and frames.headers["content-type"].startswith("multipart/related")
    assert int(frames.headers["content-length"]) == len(frames.content) > 128 * 128 * 2


def test_wado_uri_through_the_proxy(browser, study):
    instance = _first_instance(browser, study, study.seg_series_uid)
    query = (f"requestType=WADO&studyUID={study.study_uid}&seriesUID={study.seg_series_uid}&objectUID={instance}"
             "&contentType=application/dicom")
    response = browser.get(f"{PREFIX}/wado?{query}")  # Orthanc 1.10 does not decode "application%2Fdicom": the query goes on as sent
    assert response.status_code == 200 and response.headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(response.content)).Modality == "SEG"


def test_head_answers_headers_only(browser, study):
    response = browser.head(f"{PREFIX}/dicom-web/studies/{study.study_uid}/series")
    assert response.status_code == 200 and response.content == b"" and int(response.headers["content-length"]) > 0


def test_browser_credentials_do_not_reach_the_pacs(browser, pacs, study):
    garbage = {"Authorization": "Basic " + base64.b64encode(b"mallory:guess").decode(), "Cookie": "session=stolen"}
    assert httpx.get(f"{pacs.dicomweb_url}/studies", headers=garbage, trust_env=False).status_code == 401  # Orthanc itself refuses them
    response = browser.get(f"{PREFIX}/dicom-web/studies", headers=garbage)
    assert response.status_code == 200 and response.json()[0]["0020000D"]["Value"] == [study.study_uid]


def test_the_pacs_password_is_never_served(browser, pacs, study):
    user, password = pacs.auth
    secrets = [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
    instance = _first_instance(browser, study, study.ct_series_uid)
    series = f"{PREFIX}/dicom-web/studies/{study.study_uid}/series/{study.ct_series_uid}"
    responses = [browser.get(PREFIX + path) for path in ("/", "/app-config.js", "/dicom-web/studies", "/nothing.js", "/dicom-web/nothing")]
    responses += [browser.get(f"{series}/metadata"),
                  browser.get(f"{series}/instances/{instance}/frames/1", headers={"Accept": FRAME_ACCEPT}),
                  browser.head(f"{series}/instances"), browser.delete(f"{series}/instances")]
    for response in responses:
        served = response.content + json.dumps(dict(response.headers)).encode()
        assert not any(secret.encode() in served for secret in secrets), response.url
        assert "www-authenticate" not in response.headers and "set-cookie" not in response.headers


def test_writes_are_refused(browser, pacs, study):
    for method in ("DELETE", "PUT", "POST", "PATCH"):
        for path in (f"/dicom-web/studies/{study.study_uid}", "/dicom-web/studies", "/wado", "/", "/index.html"):
            assert browser.request(method, PREFIX + path, content=b"x").status_code == 405, (method, path)
    with pacs.client() as client:
        assert len(client.get("/instances").json()) == 21  # 20 CT slices and the SEG, all still there


@pytest.mark.parametrize("raw_path", ["/dicom-web/%2e%2e/system", "/dicom-web/..%2f..%2fsystem", "/dicom-web/studies%3Fx=1",
                                      "/dicom-web/%2e%2e/%2e%2e/instances"])
def test_paths_cannot_leave_the_dicomweb_root(viewer, raw_path):
    connection = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=10)
    try:
        connection.request("GET", PREFIX + raw_path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 404 and b"ApiVersion" not in body and b"[" not in body


class RecordingPacs:
    """A stand-in PACS on loopback that notes what it was sent and answers ``status`` (with a login
    challenge on 401), to see exactly what the proxy forwards."""

    def __init__(self, status: int = 200):
        self.requests: list[tuple[str, dict]] = []
        recording = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                recording.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b"[]" if status == 200 else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Set-Cookie", "pacs-session=abc")
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="PACS"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/pacs/dicom-web"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def viewer_before(mini_dist, dicomweb_url: str, auth: tuple[str, str]):
    """The viewer's routes (over a miniature OHIF build) in front of ``dicomweb_url``, and a client of them."""
    live = WebServer(viewer_app(mini_dist, dicomweb_url, auth)).start()
    try:
        with httpx.Client(base_url=live.url, trust_env=False, timeout=30) as client:
            yield client
    finally:
        live.stop()


def test_only_the_service_credentials_and_chosen_headers_go_on(mini_dist):
    with RecordingPacs() as pacs, viewer_before(mini_dist, pacs.dicomweb_url, ("edge", "s3cret")) as client:
        response = client.get(f"{PREFIX}/dicom-web/studies?PatientID=X*&limit=5&includefield=00081030%2c00080060&x=a%2Fb%20c",
                              headers={"Authorization": "Bearer browser-token", "Cookie": "edge-session=1",
                                       "Accept": "application/dicom+json",
                                       "X-Forwarded-For": "10.0.0.9", "Referer": "http://127.0.0.1/viewer/", "Accept-Encoding": "gzip"})
        again = client.get(f"{PREFIX}/dicom-web/studies")
    assert response.status_code == 200 and response.json() == [] and "set-cookie" not in response.headers
    assert again.status_code == 200 and "cookie" not in pacs.requests[1][1]  # nor is the PACS's own cookie kept for the next request
    (path, headers), _ = pacs.requests
    assert path == "/pacs/dicom-web/studies?PatientID=X*&limit=5&includefield=00081030,00080060&x=a/b%20c"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"edge:s3cret").decode()
    assert headers["accept"] == "application/dicom+json" and headers["accept-encoding"] == "identity"
    assert not {"cookie", "x-forwarded-for", "referer"} & set(headers)


def test_a_pacs_refusing_the_service_is_a_502_without_a_login_prompt(mini_dist):
    with RecordingPacs(status=401) as pacs, viewer_before(mini_dist, pacs.dicomweb_url, ("edge", "wrong")) as client:
        response = client.get(f"{PREFIX}/dicom-web/studies")
    assert response.status_code == 502 and "refused the edge service's credentials" in response.text
    assert "www-authenticate" not in response.headers


def test_an_unreachable_pacs_is_a_502(mini_dist):
    closed = f"http://127.0.0.1:{daemons.free_port()}/dicom-web"
    with viewer_before(mini_dist, closed, ("edge", "pw")) as client:
        response = client.get(f"{PREFIX}/dicom-web/studies")
    assert response.status_code == 502 and "cannot be reached" in response.text and "pw" not in response.text
