"""The site's results store: every study that came in, what became of it, and the physician's
verdict, through SQLAlchemy (SQLite by default; PostgreSQL and others by URL). It stays at the
hospital: it holds identifiers and so PHI, and only the service's authenticated pages read it.

A study's state moves receiving -> queued -> screening -> screened | not_screenable | failed; a
study sent again returns to receiving and is screened again only if its CT instances changed.
A service killed mid-study finds it ``screening`` on restart and queues it again."""

from __future__ import annotations

import enum
import hashlib
import json
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored naive, always UTC


class Status(str, enum.Enum):
    receiving = "receiving"
    queued = "queued"
    screening = "screening"
    screened = "screened"
    not_screenable = "not_screenable"
    failed = "failed"


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(200))
    accession: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[str | None] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(80))  # "dimse:<calling AE>" or "dicomweb"
    status: Mapped[str] = mapped_column(String(20), default=Status.receiving.value, index=True)
    reason: Mapped[str | None] = mapped_column(Text)  # why not screenable, failed, or waiting
    first_arrival: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_arrival: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    screened_digest: Mapped[str | None] = mapped_column(String(64))  # the CT content last screened
    screenings: Mapped[int] = mapped_column(Integer, default=0)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(120))
    model_version: Mapped[int | None] = mapped_column(Integer)
    served_by: Mapped[str | None] = mapped_column(String(40))  # triton, or onnx-in-process when Triton was not there
    probability: Mapped[float | None] = mapped_column(Float)
    positive: Mapped[bool | None] = mapped_column(Boolean)
    threshold: Mapped[float | None] = mapped_column(Float)
    lesion_ml: Mapped[float | None] = mapped_column(Float)
    lung_ml: Mapped[float | None] = mapped_column(Float)
    key_slices: Mapped[str | None] = mapped_column(Text)  # JSON list of slice indices shown on the study page
    timings: Mapped[str | None] = mapped_column(Text)  # JSON stage -> seconds
    inputs: Mapped[str | None] = mapped_column(Text)  # JSON: scanner, slice thickness, lung HU statistics
    seg_uid: Mapped[str | None] = mapped_column(String(64))
    sr_uid: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str | None] = mapped_column(String(20))  # confirmed | corrected
    verdict_finding: Mapped[str | None] = mapped_column(String(40))  # the physician's finding (a subtype)
    missed_lesions: Mapped[bool] = mapped_column(Boolean, default=False)
    verdict_note: Mapped[str | None] = mapped_column(Text)
    verdict_by: Mapped[str | None] = mapped_column(String(80))
    verdict_at: Mapped[datetime | None] = mapped_column(DateTime)

    instances: Mapped[list["Instance"]] = relationship(back_populates="study", cascade="all, delete-orphan")

    def json_field(self, name: str):
        value = getattr(self, name)
        return json.loads(value) if value else None


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("study_id", "sop_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64))
    sop_class: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="instances")


class Outgoing(Base):
    """A confirmed case on its way to central; ``case_id`` is unique, so it is never queued twice."""

    __tablename__ = "outgoing"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    case_id: Mapped[str] = mapped_column(String(80), unique=True)
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending | sent | refused
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)


CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def ct_digest(instances: list[Instance]) -> str:
    """The study's CT content: what screening reads. Results this service stored (SEG, SR) and
    other objects do not count, so a PACS that routes them back does not trigger a rescreen."""
    digest = hashlib.sha256()
    for instance in sorted((i for i in instances if i.sop_class in (CT_IMAGE, ENHANCED_CT_IMAGE)), key=lambda i: i.sop_uid):
        digest.update(f"{instance.sop_uid}:{instance.sha256};".encode())
    return digest.hexdigest()


class ResultsStore:
    def __init__(self, url: str):
        self.engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self):
        with self.sessions() as session, session.begin():
            yield session

    def recover(self) -> int:
        """Studies a killed service left mid-screening go back to the queue; how many."""
        with self.session() as session:
            stuck = session.scalars(select(Study).where(Study.status == Status.screening.value)).all()
            for study in stuck:
                study.status, study.reason = Status.queued.value, "screening was interrupted; screening it again"
            return len(stuck)

    def study(self, study_id: int) -> Study | None:
        with self.session() as session:
            return session.get(Study, study_id)

    def studies(self, status: str | None = None, limit: int = 200) -> list[Study]:
        with self.session() as session:
            query = select(Study).order_by(Study.last_arrival.desc(), Study.id.desc()).limit(limit)
            if status:
                query = query.where(Study.status == status)
            return list(session.scalars(query))

    def count_by_status(self) -> dict[str, int]:
        with self.session() as session:
            counts = {s.value: 0 for s in Status}
            for status in session.scalars(select(Study.status)):
                counts[status] += 1
            return counts

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets the web pages read while the worker writes; a busy timeout instead of 'database is locked'."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


__all__ = ["ResultsStore", "Study", "Instance", "Outgoing", "Status", "Session", "ct_digest", "utcnow"]
