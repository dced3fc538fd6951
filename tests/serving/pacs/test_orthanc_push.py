"""Orthanc forwarding a study to the receiver, as a hospital PACS routes studies to the edge."""

from __future__ import annotations

import pydicom
import pytest

from serving.pacs import orthanc
from serving.pacs.dicomweb import DicomWebClient
from serving.pacs.receiver import StoreReceiver
from tests.serving.pacs.conftest import assert_same_instances


@pytest.fixture(scope="module")
def routed(pacs_home, tmp_path_factory):
    """A receiver EDGE taking calls from ROUTER only, and an Orthanc ROUTER that knows it as modality EDGE."""
    root = tmp_path_factory.mktemp("routed")
    arrivals = []
    with StoreReceiver("EDGE", 0, ["ROUTER"], root / "spool", arrivals.append) as receiver:
        try:
            server = orthanc.start(root / "orthanc", aet="ROUTER", modalities={
                "EDGE": ["EDGE", "127.0.0.1", receiver.port], "WRONG": ["NOTEDGE", "127.0.0.1", receiver.port]})
        except orthanc.PacsUnavailable as exc:
            pytest.skip(str(exc))
        yield server, receiver, arrivals
        orthanc.stop(root / "orthanc")


def test_orthanc_forwards_a_study(routed, series):
    server, receiver, arrivals = routed
    sent = series("j2k-lossless") + series("explicit", slices=2)  # two studies; only the first is forwarded
    with DicomWebClient(server.dicomweb_url, auth=server.auth) as web:
        web.store(sent)
    study_uid = pydicom.dcmread(sent[0]).StudyInstanceUID
    with server.client() as client:
        assert client.post("/modalities/EDGE/echo", json={}).status_code == 200
        [study_id] = client.post("/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).json()
        forwarded = client.post("/modalities/EDGE/store", json={"Resources": [study_id], "Synchronous": True})
        assert forwarded.status_code == 200, forwarded.text
        assert client.post("/modalities/WRONG/echo", json={}).status_code != 200
    forwarded_files = sorted((receiver.spool / study_uid).glob("*.dcm"))
    assert_same_instances(forwarded_files, sent[:6])
    assert sorted(a.path for a in arrivals) == forwarded_files
    assert {a.calling_ae for a in arrivals} == {"ROUTER"}
    assert receiver.refused == 1  # the echo to the wrong AE title
