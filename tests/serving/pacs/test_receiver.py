"""The C-STORE receiver, fed by DCMTK's storescu (a third-party client) and by our own sender."""

from __future__ import annotations

import shutil
import stat
import subprocess
import threading
import warnings

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import _config as pynetdicom_config

from serving.pacs.errors import PacsError
from serving.pacs.receiver import StoreReceiver
from serving.pacs.sender import echo, send_instances
from tests.serving.pacs.conftest import assert_same_instances

DCMTK = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK (storescu, echoscu) is not installed")
STORESCU_PROPOSE = {"explicit": [], "rle": ["-xr"], "j2k-lossless": ["-xv"], "j2k": ["-xw"], "jpeg-ls": ["-xt"], "deflate": ["-xd"]}


class Spool:
    """A receiver EDGE taking calls from CALLER, recording every arrival and refusal."""

    def __init__(self, root):
        self.root = root
        self.arrivals, self.refusals = [], []
        self.lock = threading.Lock()
        self.fail = None  # set to an exception to make on_instance raise it
        self.receiver = StoreReceiver("EDGE", 0, ["CALLER"], root, self.on_instance, on_refused=self.refusals.append)

    def on_instance(self, arrival):
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.arrivals.append(arrival)

    def files(self):
        return sorted(self.root.rglob("*.dcm"))

    def leftovers(self):
        return sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix != ".dcm")


@pytest.fixture
def spool(tmp_path):
    spool = Spool(tmp_path / "spool")
    with spool.receiver:
        yield spool


def storescu(port, paths, calling="CALLER", called="EDGE", propose=()):
    return subprocess.run(["storescu", *propose, "-aet", calling, "-aec", called, "127.0.0.1", str(port), *map(str, paths)],
                          capture_output=True, text=True, timeout=60)


@DCMTK
@pytest.mark.parametrize("syntax", list(STORESCU_PROPOSE))
def test_storescu_series_arrives_intact(spool, series, syntax):
    sent = series(syntax)
    done = storescu(spool.receiver.port, sent, propose=STORESCU_PROPOSE[syntax])
    assert done.returncode == 0, done.stderr
    assert_same_instances(spool.files(), sent)
    study = pydicom.dcmread(sent[0]).StudyInstanceUID
    assert {p.parent.name for p in spool.files()} == {study}
    assert {a.path for a in spool.arrivals} == set(spool.files())
    assert {a.calling_ae for a in spool.arrivals} == {"CALLER"}
    assert {a.sop_uid for a in spool.arrivals} == {p.stem for p in spool.files()}
    assert spool.leftovers() == []


def test_sender_series_arrives_intact(spool, series):
    sent = series("explicit") + series("rle", slices=3)  # two studies, two transfer syntaxes, one association
    send_instances(sent, "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert_same_instances(spool.files(), sent)
    assert len(spool.arrivals) == len(sent)
    arrival = spool.arrivals[0]
    assert (arrival.study_uid, arrival.series_uid) == (pydicom.dcmread(arrival.path).StudyInstanceUID, pydicom.dcmread(arrival.path).SeriesInstanceUID)
    assert arrival.path == spool.root / arrival.study_uid / f"{arrival.sop_uid}.dcm"
    assert arrival.received.tzinfo is not None
    assert {stat.S_IMODE(p.stat().st_mode) for p in spool.files()} == {0o600}  # patient data: the service's own
    assert stat.S_IMODE(spool.root.stat().st_mode) == 0o700


def test_sender_sends_datasets_and_other_sop_classes(spool, series):
    """A dataset held in memory, and an SR next to the CT (the results the edge sends back)."""
    ct = pydicom.dcmread(series()[0])
    report = _minimal("1.2.840.10008.5.1.4.1.1.88.22", "SR", study=ct.StudyInstanceUID)  # Enhanced SR
    send_instances([ct, report], "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert {a.sop_class_uid for a in spool.arrivals} == {ct.SOPClassUID, report.SOPClassUID}
    assert {a.study_uid for a in spool.arrivals} == {ct.StudyInstanceUID}


@DCMTK
def test_unknown_calling_ae_is_refused_by_storescu(spool, series):
    done = storescu(spool.receiver.port, series(), calling="STRANGER")
    assert done.returncode != 0
    assert "Calling AE Title Not Recognized" in done.stderr
    assert spool.files() == [] and spool.arrivals == []
    assert spool.refusals == ["STRANGER"] and spool.receiver.refused == 1


@pytest.mark.parametrize("calling, called, reason", [("STRANGER", "EDGE", "Calling AE title not recognised"),
                                                      ("CALLER", "OTHER", "Called AE title not recognised")])
def test_unknown_ae_titles_are_refused(spool, series, calling, called, reason):
    with pytest.raises(PacsError, match=reason) as refused:
        send_instances(series(), "127.0.0.1", spool.receiver.port, called, calling)
    assert f"{called}@127.0.0.1:{spool.receiver.port}" in str(refused.value)
    assert spool.files() == [] and spool.arrivals == []
    assert spool.refusals == [calling] and spool.receiver.refused == 1


def test_allowed_callers_must_be_named(tmp_path):
    for none in ([], [""]):
        with pytest.raises(ValueError, match="allowed_callers"):
            StoreReceiver("EDGE", 0, none, tmp_path, lambda arrival: None)
    with pytest.raises(TypeError, match="not one string"):
        StoreReceiver("EDGE", 0, "CALLER", tmp_path, lambda arrival: None)


@pytest.mark.parametrize("keyword, value", [("StudyInstanceUID", "1.2.840/../../etc"), ("StudyInstanceUID", None),
                                            ("SOPInstanceUID", "1.2.x"), ("SeriesInstanceUID", "9" * 65)])
def test_instance_with_unusable_uid_is_refused(spool, series, keyword, value):
    bad = pydicom.dcmread(series(slices=1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UIDs it is asked to set and send
        if value is None:
            del bad[keyword]
        else:
            setattr(bad, keyword, value)
            if keyword == "SOPInstanceUID":
                bad.file_meta.MediaStorageSOPInstanceUID = value
        with pytest.raises(PacsError, match="status 0xC000"):
            send_instances([bad], "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert list(spool.root.rglob("*")) == [] and spool.arrivals == []
    assert not (spool.root.parent / "etc").exists()


def test_dataset_not_matching_its_request_is_refused(spool, series, monkeypatch):
    """Sent from the file as it is, the request announces the file meta's SOP instance; a dataset
    naming another is refused."""
    path = series(slices=1)[0]
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path)
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    with pytest.raises(PacsError, match="status 0xA900"):
        send_instances([path], "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert spool.files() == [] and spool.arrivals == []


def test_failing_callback_fails_the_store_and_the_server_goes_on(spool, series):
    first, second = series(slices=2), series(slices=2)
    spool.fail = RuntimeError("database is locked")
    with pytest.raises(PacsError, match=r"did not store 2 of 2 instances: .*status 0xA700"):
        send_instances(first, "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert spool.files() == [] and spool.leftovers() == []
    spool.fail = None
    send_instances(second, "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert_same_instances(spool.files(), second)


def test_failing_write_fails_the_store(spool, series):
    sent = series(slices=1)
    study = spool.root / pydicom.dcmread(sent[0]).StudyInstanceUID
    study.write_text("a file where the study's folder should be")
    with pytest.raises(PacsError, match="status 0xA700"):
        send_instances(sent, "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert spool.arrivals == []


@DCMTK
def test_echoscu_and_echo(spool):
    done = subprocess.run(["echoscu", "-aet", "CALLER", "-aec", "EDGE", "127.0.0.1", str(spool.receiver.port)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    echo("127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    with pytest.raises(PacsError, match="rejected the association from STRANGER"):
        echo("127.0.0.1", spool.receiver.port, "EDGE", "STRANGER")


def test_sop_class_the_peer_does_not_take_is_named(spool, series):
    ct = series(slices=1)
    private = _minimal("1.2.826.0.1.3680043.8.498.1999", "OT", study=generate_uid())
    with pytest.raises(PacsError, match=rf"did not store 1 of 2 instances: instance {private.SOPInstanceUID}: No presentation context"):
        send_instances([*ct, private], "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")
    assert len(spool.files()) == 1
    with pytest.raises(PacsError, match="accepted none of the SOP classes"):
        send_instances([private], "127.0.0.1", spool.receiver.port, "EDGE", "CALLER")


def test_port_taken(spool, tmp_path):
    with pytest.raises(PacsError, match=f"cannot listen on 127.0.0.1:{spool.receiver.port}"):
        StoreReceiver("EDGE", spool.receiver.port, ["CALLER"], tmp_path, lambda arrival: None).start()


def test_nobody_listening(tmp_path):
    receiver = StoreReceiver("EDGE", 0, ["CALLER"], tmp_path, lambda arrival: None).start()
    port = receiver.port
    receiver.stop()
    with pytest.raises(PacsError, match=f"EDGE@127.0.0.1:{port}: cannot associate"):
        echo("127.0.0.1", port, "EDGE", "CALLER", timeout=5)


def _minimal(sop_class: str, modality: str, study: str) -> pydicom.Dataset:
    """Just what storage needs: the SOP, study and series UIDs (the edge's SR and SEG are built elsewhere)."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, generate_uid(), modality
    return ds
