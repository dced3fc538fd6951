"""Studies as they arrive, instance by instance, from the receiver or a DICOMweb poll: each is
recorded in the results store and a study counts as complete once no new instance came for the
quiet period — a PACS sends a study as a stream of files with no end marker.

An instance that arrives again unchanged (same SOP instance, same bytes) changes nothing, so the
same study sent twice is not screened twice; a new or changed CT instance makes it a study to
screen again. A study whose screening failed (a transient fault) is queued again when resent."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
from sqlalchemy import select

from ctscreen.digests import file_sha256
from serving.edge.service.store import Instance, ResultsStore, Status, Study, ct_digest, utcnow

log = logging.getLogger("ctscreen.edge.service")


def _text(ds: pydicom.Dataset, keyword: str, limit: int) -> str | None:
    value = ds.get(keyword)
    return str(value)[:limit] if value not in (None, "") else None


class Arrivals:
    def __init__(self, store: ResultsStore, quiet_period_s: float, on_duplicate=None):
        self.store = store
        self.quiet = timedelta(seconds=quiet_period_s)
        self.on_duplicate = on_duplicate or (lambda study_uid: None)

    def record(self, study_uid: str, series_uid: str, sop_uid: str, sop_class: str, path: Path, source: str,
               received: datetime | None = None) -> bool:
        """One instance written at ``path``; True when it changed the study (new or different bytes)."""
        received = received or utcnow()
        sha = file_sha256(path)
        with self.store.session() as session:
            study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one_or_none()
            if study is None:
                study = Study(study_uid=study_uid, source=source, first_arrival=received, last_arrival=received,
                              **_identity(path))
                session.add(study)
                session.flush()
            instance = session.scalars(select(Instance).where(Instance.study_id == study.id, Instance.sop_uid == sop_uid)).one_or_none()
            if instance is not None and instance.sha256 == sha:
                if study.status == Status.failed.value:
                    study.status, study.reason, study.last_arrival = Status.receiving.value, "sent again after a failure", received
                    return True
                return False
            if instance is None:
                session.add(Instance(study_id=study.id, sop_uid=sop_uid, sop_class=sop_class, series_uid=series_uid,
                                     sha256=sha, path=str(path), received_at=received))
            else:
                instance.sha256, instance.path, instance.received_at = sha, str(path), received
            study.last_arrival = received
            if study.status != Status.receiving.value:
                study.status, study.reason = Status.receiving.value, None
            return True

    def complete(self, now: datetime | None = None) -> list[int]:
        """Studies quiet for the quiet period: queued to screen, or (their CT content being what was
        screened already, as when only results came back) returned to where they were."""
        cutoff = (now or utcnow()) - self.quiet
        queued = []
        with self.store.session() as session:
            quiet = session.scalars(select(Study).where(Study.status == Status.receiving.value, Study.last_arrival <= cutoff)).all()
            for study in quiet:
                if study.screened_digest is not None and ct_digest(study.instances) == study.screened_digest:
                    study.status, study.reason = Status.screened.value, "sent again unchanged: not screened again"
                    self.on_duplicate(study.study_uid)
                    continue
                study.status, study.reason = Status.queued.value, None
                queued.append(study.id)
        return queued

    def next_queued(self) -> int | None:
        """The study waiting longest, marked as being screened (one worker takes it)."""
        with self.store.session() as session:
            study = session.scalars(select(Study).where(Study.status == Status.queued.value)
                                    .order_by(Study.last_arrival, Study.id).limit(1)).one_or_none()
            if study is None:
                return None
            study.status = Status.screening.value
            return study.id


def _identity(path: Path) -> dict:
    """Who and what the study is, from its first instance, for the worklist (kept at the site)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as error:  # a corrupt first file: the study is still recorded, screening will say why
        log.warning("cannot read the header of %s (%s)", path.name, type(error).__name__)
        return {}
    return {"patient_id": _text(ds, "PatientID", 64), "patient_name": _text(ds, "PatientName", 200),
            "accession": _text(ds, "AccessionNumber", 64), "study_date": _text(ds, "StudyDate", 8)}
