"""The results store and the arrivals' rules on both databases a site may use: SQLite (the
default) and a real PostgreSQL server started on loopback for the test."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from serving import daemons
from serving.edge.service.arrivals import Arrivals
from serving.edge.service.store import CT_IMAGE, Base, ResultsStore, Status, Study, ct_digest, utcnow

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


@pytest.fixture(scope="module")
def postgresql():
    """A PostgreSQL server on loopback, run as Debian's postgres user (it refuses to run as root)."""
    if not POSTGRES_BIN:
        pytest.skip("PostgreSQL is not installed (Debian's postgresql)")
    bin_dir = Path(POSTGRES_BIN[-1])
    as_user = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    if as_user and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    root = Path(tempfile.mkdtemp(prefix="ctscreen-postgresql-"))  # outside pytest's folders, which only root may enter
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if as_user:
        user = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "ctscreen"], check=True, capture_output=True)
    port = daemons.free_port()
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
                    "-o", f"-h 127.0.0.1 -p {port} -k {sockets}", "start"], check=True, capture_output=True)
    yield f"postgresql+psycopg://ctscreen@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'results.db'}" if request.param == "sqlite" else request.getfixturevalue("postgresql")
    opened = ResultsStore(url)
    yield opened
    if request.param == "postgresql":  # one server for the module: each test starts from empty tables
        Base.metadata.drop_all(opened.engine)
    opened.close()


def instance(folder: Path, name: str, content: bytes = b"pixels") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def test_a_study_is_queued_once_quiet_and_the_same_instances_again_change_nothing(store, tmp_path):
    arrivals = Arrivals(store, quiet_period_s=30)
    start = utcnow()
    for k in range(3):
        assert arrivals.record("1.2.3", "1.2.3.1", f"1.2.3.1.{k}", CT_IMAGE, instance(tmp_path, f"{k}.dcm"), "dimse:PACS", start)
    assert arrivals.complete(start + timedelta(seconds=10)) == []  # still within the quiet period
    [queued] = arrivals.complete(start + timedelta(seconds=31))
    assert arrivals.next_queued() == queued and arrivals.next_queued() is None
    with store.session() as session:
        study = session.get(Study, queued)
        study.status, study.screened_digest = Status.screened.value, ct_digest(study.instances)

    assert not arrivals.record("1.2.3", "1.2.3.1", "1.2.3.1.0", CT_IMAGE, tmp_path / "0.dcm", "dimse:PACS")  # sent again, same bytes
    assert store.study(queued).status == Status.screened.value
    assert arrivals.record("1.2.3", "1.2.3.9", "1.2.3.9.1", SEG_STORAGE, instance(tmp_path, "seg.dcm"), "dimse:PACS")  # results routed back
    assert arrivals.complete(utcnow() + timedelta(seconds=31)) == []  # the CT content is what was screened
    assert store.study(queued).reason == "sent again unchanged: not screened again"
    assert arrivals.record("1.2.3", "1.2.3.1", "1.2.3.1.1", CT_IMAGE, instance(tmp_path, "1.dcm", b"other pixels"), "dimse:PACS")
    assert arrivals.complete(utcnow() + timedelta(seconds=31)) == [queued]  # changed content: screened again


def test_a_failed_study_sent_again_is_queued_again_and_interrupted_ones_are_recovered(store, tmp_path):
    arrivals = Arrivals(store, quiet_period_s=0)
    arrivals.record("4.5", "4.5.1", "4.5.1.1", CT_IMAGE, instance(tmp_path, "a.dcm"), "dicomweb")
    [study_id] = arrivals.complete()
    arrivals.next_queued()
    assert store.recover() == 1 and store.study(study_id).status == Status.queued.value
    with store.session() as session:
        session.get(Study, study_id).status = Status.failed.value
    assert arrivals.record("4.5", "4.5.1", "4.5.1.1", CT_IMAGE, tmp_path / "a.dcm", "dicomweb")
    assert arrivals.complete() == [study_id]
    assert store.count_by_status()["queued"] == 1 and [s.study_uid for s in store.studies("queued")] == ["4.5"]
