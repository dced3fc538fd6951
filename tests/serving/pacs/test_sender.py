"""C-STORE into Orthanc, as the edge sends results back to the hospital's PACS."""

from __future__ import annotations

import pydicom
import pytest

from serving.pacs.errors import PacsError
from serving.pacs.sender import echo, send_instances


def _orthanc_study(pacs, study_uid):
    with pacs.client() as client:
        found = client.post("/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}).json()
        assert len(found) == 1, found
        assert found[0]["ID"] in client.get("/studies").json()
        return found[0], client.get(f"/studies/{found[0]['ID']}/instances").json()


@pytest.mark.parametrize("syntax", ["explicit", "j2k-lossless"])
def test_store_series_into_orthanc(pacs, series, syntax):
    sent = series(syntax)
    echo("127.0.0.1", pacs.dicom_port, pacs.aet)
    send_instances(sent, "127.0.0.1", pacs.dicom_port, pacs.aet)
    study, instances = _orthanc_study(pacs, pydicom.dcmread(sent[0]).StudyInstanceUID)
    assert study["PatientMainDicomTags"]["PatientName"] == "Doe^Jane"
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in instances) == sorted(pydicom.dcmread(p).SOPInstanceUID for p in sent)


def test_wrong_called_ae_title_is_refused(pacs, series):
    # Orthanc closes the connection right after its A-ASSOCIATE-RJ; on a loaded machine pynetdicom may
    # see the close before the rejection, and then can only say the association did not happen
    with pytest.raises(PacsError, match=f"NOTPACS@127.0.0.1:{pacs.dicom_port}(?: rejected the association|: cannot associate)"):
        send_instances(series(slices=1), "127.0.0.1", pacs.dicom_port, "NOTPACS")


def test_unreadable_instances_are_named_before_any_association(tmp_path):
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not DICOM")
    with pytest.raises(PacsError, match="notes.txt: cannot be sent to PACS@127.0.0.1:1: not a readable DICOM file"):
        send_instances([not_dicom], "127.0.0.1", 1, "PACS")
    with pytest.raises(PacsError, match="no SOPClassUID or file meta TransferSyntaxUID"):
        send_instances([pydicom.Dataset()], "127.0.0.1", 1, "PACS")
    send_instances([], "127.0.0.1", 1, "PACS")  # nothing to send: no association either
