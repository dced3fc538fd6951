"""A real Orthanc holding a small synthetic chest CT and the screening's SEG of its lesion, and the
viewer's routes served by uvicorn on loopback in front of it, as the edge service will serve them."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
from fastapi import FastAPI

from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from serving.edge.service.web import WebServer
from serving.results.seg import LESION_LABEL, write_segmentation
from serving.results.source import read_source_series
from serving.viewer.app import viewer_router
from serving.viewer.ohif import ViewerUnavailable, locate_dist
from tests.serving.conftest import running_orthanc

PREFIX = "/viewer"
SHAPE_ZYX, SPACING_ZYX = (20, 128, 128), (2.5, 0.75, 0.75)
MINI_INDEX = ('<!doctype html><html><head><meta name="msapplication-TileImage" content="/assets/mstile.png">'
              '<script>window.PUBLIC_URL="/"</script><link rel="manifest" href="/manifest.json">'
              '<script rel="preload" as="script" src="/app-config.js"></script><a href="//cdn.example/x"></a>'
              '<script defer src="/app.bundle.abc.js"></script></head><body></body></html>')
MINI_BUNDLE = 'x();\n__webpack_require__.p = "/";\nimport(\'/dicom-microscopy-viewer/viewer.min.js\');\n'


@dataclass(frozen=True)
class Study:
    study_uid: str
    ct_series_uid: str
    seg_series_uid: str
    patient_name: str
    seg_description: str
    lesion_label: str


def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU volume (body, two lungs, a bright 8 mm sphere in the right lung), its lesion and lung masks."""
    z, y, x = np.mgrid[:SHAPE_ZYX[0], :SHAPE_ZYX[1], :SHAPE_ZYX[2]]
    hu = np.full(SHAPE_ZYX, -1000.0, np.float32)
    hu[((y - 64) / 50) ** 2 + ((x - 64) / 58) ** 2 <= 1] = 40.0
    lungs = np.zeros(SHAPE_ZYX, bool)
    for cx in (38, 90):
        lungs |= ((y - 62) / 34) ** 2 + ((x - cx) / 20) ** 2 <= 1
    hu[lungs] = -850.0
    mm = np.stack([z * SPACING_ZYX[0], y * SPACING_ZYX[1], x * SPACING_ZYX[2]])
    centre = np.array([10 * SPACING_ZYX[0], 60 * SPACING_ZYX[1], 38 * SPACING_ZYX[2]])[:, None, None, None]
    lesion = np.sqrt(((mm - centre) ** 2).sum(axis=0)) <= 8.0
    hu[lesion] = 60.0
    return hu, lesion, lungs


@pytest.fixture
def mini_dist(tmp_path):
    """A miniature build shaped like @ohif/app 3.13's dist/, for what needs no real OHIF."""
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(MINI_INDEX)
    (dist / "app.bundle.abc.js").write_text(MINI_BUNDLE)
    (dist / "plain.bundle.js").write_text("console.log('/not-a-path');\n")
    (dist / "app.bundle.css").write_text("@font-face{src:url(/font.woff2)}a{background:url(//cdn.example/y.png)}")
    (dist / "assets" / "icon.png").write_bytes(b"\x89PNG")
    for name in ("sw.js", "app-config.js"):
        (dist / name).write_text("// from npm")
    (tmp_path / "secret.txt").write_text("outside dist")
    return dist


@pytest.fixture(scope="package")
def pacs(tmp_path_factory):
    with running_orthanc(tmp_path_factory, "viewer-pacs") as server:
        yield server


@pytest.fixture(scope="package")
def study(pacs, tmp_path_factory) -> Study:
    """The CT and its SEG (written by serving.results.seg, as the service writes it), stored in the PACS."""
    folder = tmp_path_factory.mktemp("viewer-ct") / "ct"
    hu, lesion, lungs = phantom()
    description = SeriesDescription(attributes={"PatientName": "Viewer^Phantom", "PatientID": "VIEWER-0001",
                                                "StudyDescription": "CT chest (viewer test)", "SeriesDescription": "Chest phantom",
                                                "AccessionNumber": "ACC-VIEW-1"})
    paths = write_ct_series(hu, SPACING_ZYX, folder, description)
    seg = write_segmentation(read_source_series(folder, description.series_instance_uid), lesion, lungs, "fcn8s", 3)
    encoded = io.BytesIO()
    pydicom.dcmwrite(encoded, seg, enforce_file_format=True)
    with pacs.client() as client:
        for content in [path.read_bytes() for path in paths] + [encoded.getvalue()]:
            client.post("/instances", content=content).raise_for_status()
    return Study(description.study_instance_uid, description.series_instance_uid, str(seg.SeriesInstanceUID),
                 "Viewer^Phantom", str(seg.SeriesDescription), LESION_LABEL)


@pytest.fixture(scope="package")
def dist():
    try:
        return locate_dist()
    except ViewerUnavailable as exc:
        pytest.skip(str(exc))


class RecordPaths:
    """ASGI middleware noting every path asked for: the browser must ask for nothing outside the prefix."""

    def __init__(self, app):
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)



def viewer_app(dist, dicomweb_url: str, auth) -> FastAPI:
    """A plain app with the viewer's routes, and a page of its own at the root as the edge service has."""
    app = FastAPI()
    app.include_router(viewer_router(dist, dicomweb_url, auth, prefix=PREFIX))

    @app.get("/")
    def worklist() -> dict:
        return {"page": "worklist"}

    return app


@pytest.fixture(scope="package")
def viewer(dist, pacs, study):
    """The viewer in front of the PACS; ``.app.paths``: what was asked of it."""
    live = WebServer(RecordPaths(viewer_app(dist, pacs.dicomweb_url, pacs.auth))).start()
    yield live
    live.stop()
