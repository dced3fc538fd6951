"""Confirmed cases back to central: a physician's verdict on a screened study makes it a labelled case
for retraining. The queue is the results store's ``outgoing`` table, so it survives restarts; each
attempt packages the study as it stands then (de-identified here, audited, masks on the de-identified
grid), delivers it to central's intake, and only then marks it sent. ``ctscreen dataset ingest`` at
central takes the intake as it is.

What this module decides:

* One case per study, ever: ``case_id_for`` derives the id from the study UID with the site's key.
* A verdict changed before the case is sent goes out with it (the package is built at each attempt).
* Once sent, a case is not sent again: central never replaces a case (``DatasetRepository.add_cases``
  skips or refuses the same case_id). A later verdict is noted in the row's ``last_error`` for a
  person to tell central, rather than sent as a second case of the same patient.
* A package that must not leave (PHI audit not clean, images withheld for burned-in text, masks not
  on the image's grid) is ``refused``: never delivered, never retried. Anything else (central
  unreachable, intake not mounted, a full disk) is retried with exponential backoff and jitter.
* The physician's name and free-text note stay at the hospital: a name is staff identity, and free
  text can name the patient where no audit would notice (the DICOM profile removes free-text
  comments for the same reason). Dates are shifted as the de-identification shifted the study's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import re
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import pydicom
from prometheus_client import Counter
from sqlalchemy import func, select

from ctscreen.dataset.intake import grid_mismatch
from ctscreen.errors import CTScreenError, OutputError
from ctscreen.imaging.deidentification.audit import phi_findings
from ctscreen.imaging.deidentify import deidentify_study, load_key
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.synth import SUBTYPES
from ctscreen.imaging.volume import write_mask
from ctscreen.manifest import write_manifest
from ctscreen.storage_url import is_s3_url, parse_s3_url
from serving.edge.service.config import CentralSettings
from serving.edge.service.store import Outgoing, ResultsStore, Status, Study, utcnow

log = logging.getLogger("ctscreen.edge.service")

PENDING, SENT, REFUSED = "pending", "sent", "refused"
VERDICTS = ("confirmed", "corrected")
BASE_BACKOFF_S = 30.0
JITTER = (0.75, 1.0)  # share of the backoff actually waited: sites that lost central together do not return together
MISSED_LESIONS = "missed-lesions-flagged"
MANIFEST, CASE_FILE, IMAGE = "manifest.csv", "case.json", "image"
MASKS = {"lesion_mask": "lesion_mask.nii.gz", "lung_mask": "lung_mask.nii.gz"}
SOURCE = ".source"  # inside staging: the screened series with PHI, until it is de-identified
MAX_ERROR_CHARS = 500


class CaseRefused(CTScreenError):
    """The package must not leave the hospital as it is; trying again would not change that."""


def case_id_for(site: str, study_uid: str, key: bytes) -> str:
    """``<site>-<16 hex>``: the same for the same study, and unlinkable to it without the site's key
    (its own HMAC domain, so it matches none of the de-identified UIDs or pseudonyms)."""
    slug = re.sub(r"[^a-z0-9]+", "-", site.lower()).strip("-")[:40] or "site"
    return f"{slug}-" + hmac.new(key, b"central-case\0" + study_uid.encode(), hashlib.sha256).hexdigest()[:16]


def label_of(finding: str) -> str:
    return "positive" if finding == "covid" else "negative"


def not_a_case(study: Study | None) -> str | None:
    """Why the study is not (or no longer) a labelled case for central, or None."""
    if study is None:
        return "the study is no longer in the results store"
    if study.status != Status.screened.value or not study.series_uid:
        return f"the study is {study.status}, not screened"
    if study.verdict not in VERDICTS:
        return "no physician's verdict"
    if study.verdict_finding not in SUBTYPES:
        return f"finding {study.verdict_finding!r} is not one of {', '.join(SUBTYPES)}"
    return None


class CentralQueue:
    """Cases waiting for central; one caller delivers at a time (the service's worker)."""

    def __init__(self, store: ResultsStore, settings: CentralSettings, site: str, state_dir: Path, metrics=None):
        self.store, self.settings, self.site = store, settings, site
        self.key = load_key(settings.deidentification_key_file)  # a missing key stops the service at start, not at the first case
        self.outbox = Path(state_dir) / "outbox"
        self.results = Path(state_dir) / "results"
        self.s3 = parse_s3_url(settings.intake) if is_s3_url(settings.intake) else None
        self._client = None
        self.deliveries = None  # counted into the service's registry, beside its queue-length gauge
        if metrics is not None:
            self.deliveries = Counter("ctscreen_edge_central_deliveries", "Cases for central: sent, to retry, refused",
                                      ["site", "result"], registry=metrics.registry)

    def enqueue(self, study_id: int, now: datetime | None = None) -> Outgoing | None:
        """Queue the study's case after a verdict; None when it is no labelled case. A case not yet
        sent is due again at once, with the new verdict; a sent one only gets a note (see above); a
        refused one stays refused."""
        now = now or utcnow()
        with self.store.session() as session:
            study = session.get(Study, study_id)
            if not_a_case(study):
                return None
            case_id = case_id_for(self.site, study.study_uid, self.key)
            case = session.scalars(select(Outgoing).where(Outgoing.case_id == case_id)).one_or_none()
            if case is None:
                case = Outgoing(study_id=study.id, case_id=case_id, state=PENDING, attempts=0, next_attempt_at=now, created_at=now)
                session.add(case)
            elif case.state == PENDING:
                case.attempts, case.next_attempt_at, case.last_error = 0, now, None
            elif case.state == SENT:
                case.last_error = _late_verdict(study.verdict_at or now)
                log.warning("case %s: verdict changed after it was sent to central; not sent again", case_id)
            session.flush()
            return case

    def pending(self) -> int:
        with self.store.session() as session:
            return session.scalar(select(func.count()).select_from(Outgoing).where(Outgoing.state == PENDING))

    def deliver_due(self, now: datetime | None = None) -> int:
        """Each pending case that is due, packaged and delivered; how many reached central."""
        now = now or utcnow()
        with self.store.session() as session:
            due = session.scalars(select(Outgoing.id).where(Outgoing.state == PENDING, Outgoing.next_attempt_at <= now)
                                  .order_by(Outgoing.next_attempt_at, Outgoing.id)).all()
        return sum(self._attempt(outgoing_id, now) for outgoing_id in due)

    def _attempt(self, outgoing_id: int, now: datetime) -> bool:
        with self.store.session() as session:
            case = session.get(Outgoing, outgoing_id)
            study = session.get(Study, case.study_id)
            instances = [i for i in study.instances if i.series_uid == study.series_uid] if study is not None else []
        staging = self.outbox / case.case_id
        try:
            reason = not_a_case(study)
            if reason:
                raise CTScreenError(f"not a labelled case at the moment ({reason}); tried again later")
            self._build(study, instances, case.case_id, staging)
            self._deliver(staging, case.case_id)
        except CaseRefused as exc:
            log.error("case %s refused: %s", case.case_id, exc)
            self._update(outgoing_id, state=REFUSED, last_error=_error_text(exc))
            self._count("refused")
            return False
        except Exception as exc:  # a fault of this attempt: the case waits and is tried again
            attempts = case.attempts + 1
            delay = min(self.settings.max_backoff_s, BASE_BACKOFF_S * 2 ** attempts) * random.uniform(*JITTER)
            log.warning("case %s not delivered (attempt %d, next in %.0f s): %s", case.case_id, attempts, delay, exc)
            self._update(outgoing_id, attempts=attempts, last_error=_error_text(exc), next_attempt_at=now + timedelta(seconds=delay))
            self._count("retry")
            return False
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._mark_sent(outgoing_id, study.verdict_at)
        self._count("sent")
        return True

    def _mark_sent(self, outgoing_id: int, packaged_verdict_at: datetime | None) -> None:
        """Sent; with the note a sent case gets if the physician changed the verdict while it was on its way."""
        with self.store.session() as session:
            case = session.get(Outgoing, outgoing_id)
            study = session.get(Study, case.study_id)
            case.state, case.sent_at = SENT, utcnow()
            changed = study is not None and study.verdict_at != packaged_verdict_at
            case.last_error = _late_verdict(study.verdict_at or utcnow()) if changed else None

    def _update(self, outgoing_id: int, **fields) -> None:
        with self.store.session() as session:
            case = session.get(Outgoing, outgoing_id)
            for name, value in fields.items():
                setattr(case, name, value)

    def _count(self, result: str) -> None:
        if self.deliveries is not None:
            self.deliveries.labels(self.site, result).inc()

    def _build(self, study: Study, instances: list, case_id: str, staging: Path) -> None:
        """The package in ``staging``: ``image/`` (de-identified series), the masks, ``case.json``
        and a one-row ``manifest.csv``. Deterministic, so a rebuilt package matches one delivered
        before (which is how a delivery cut short after central had it is recognised)."""
        shutil.rmtree(staging, ignore_errors=True)
        if not instances:
            raise CaseRefused(f"no instances of the screened series in the results store for study {study.id}")
        source = staging / SOURCE
        source.mkdir(parents=True)
        received = {}
        for n, instance in enumerate(sorted(instances, key=lambda i: i.sop_uid)):
            received[f"{n:05d}.dcm"] = instance.path
            shutil.copyfile(instance.path, source / f"{n:05d}.dcm")  # only the screened series, whatever shares its folder
        original = pydicom.dcmread(source / "00000.dcm", stop_before_pixels=True)
        report = deidentify_study(source, staging / IMAGE, self.key, progress=False)
        shutil.rmtree(source)
        left_out = report.burned_in + report.skipped
        if left_out:
            raise CaseRefused(f"{len(left_out)} instance(s) could not be de-identified for central, "
                              f"e.g. {received[left_out[0]['file']]}: {left_out[0]['reason']}")
        files = sorted((staging / IMAGE).rglob("*.dcm"))
        for path in files:
            findings = phi_findings(pydicom.dcmread(path, stop_before_pixels=True))
            if findings:
                raise CaseRefused(f"PHI audit not clean: {path.relative_to(staging).as_posix()}: {'; '.join(findings[:3])}")
        header = pydicom.dcmread(files[0], stop_before_pixels=True)
        volume = load_volume(staging / IMAGE)
        masks = {}
        for column, name in MASKS.items():
            screened = self.results / str(study.id) / name
            if not screened.exists():
                if column == "lesion_mask":
                    raise CaseRefused(f"{screened}: no lesion mask from screening")
                continue
            mask = load_volume(screened)
            mismatch = grid_mismatch(volume, mask)
            if mismatch:
                raise CaseRefused(f"{screened}: not on the screened series' grid: {mismatch}")
            write_mask(volume, mask.hu, staging / name)
            masks[column] = name
        label = label_of(study.verdict_finding)
        write_manifest([{
            "case_id": case_id,
            "patient_id": str(header.PatientID),  # the pseudonym: keeps a patient's studies on one side of the split
            "site": self.site,
            "scanner": str(header.get("ManufacturerModelName") or header.get("Manufacturer") or "unknown"),
            "label": label,
            "subtype": study.verdict_finding,
            "image": IMAGE,
            "lesion_mask": masks["lesion_mask"],
            "lung_mask": masks.get("lung_mask", ""),
            # the lesion mask is the model's: one the physician says misses lesions must be corrected
            # before it trains anything, and central's intake holds back any case whose QC is not passed
            "qc_status": MISSED_LESIONS if study.missed_lesions else "",
        }], staging / MANIFEST)
        shift = _shift_days(original.get("StudyDate"), header.get("StudyDate"))
        (staging / CASE_FILE).write_text(json.dumps({
            "case_id": case_id,
            "site": self.site,
            "model": {"name": study.model_name, "version": study.model_version},
            "screening": {"probability": study.probability, "call": "positive" if study.positive else "negative",
                          "threshold": study.threshold, "lesion_ml": study.lesion_ml, "lung_ml": study.lung_ml},
            "verdict": {"verdict": study.verdict, "finding": study.verdict_finding, "label": label,
                        "missed_lesions": bool(study.missed_lesions), "agrees_with_model": (label == "positive") == bool(study.positive),
                        "date": (study.verdict_at.date() - timedelta(days=shift)).isoformat()
                        if shift is not None and study.verdict_at else None},
        }, indent=1, sort_keys=True) + "\n")

    def _deliver(self, staging: Path, case_id: str) -> None:
        if self.s3 is not None:
            self._put_s3(staging, case_id)
        else:
            self._put_path(staging, case_id)

    def _put_path(self, staging: Path, case_id: str) -> None:
        """Copied under a hidden name, then renamed into place: the rename is central's receipt, and
        ingest never sees half a case."""
        intake = Path(self.settings.intake)
        if not intake.is_dir():
            raise OutputError(intake, "central's intake folder is not there (not mounted?); the case waits and is tried again")
        target = intake / case_id
        if target.exists():
            if _digests(target) != _digests(staging):
                raise OutputError(target, "central already holds this case with other content; a case there is never overwritten")
            return  # delivered before, but not marked sent (the service stopped in between)
        partial = intake / f".{case_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            shutil.copytree(staging, partial)
            partial.rename(target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise

    def _put_s3(self, staging: Path, case_id: str) -> None:
        """Every file under ``<prefix>/<case_id>/``, ``manifest.csv`` last: its presence is central's receipt."""
        from botocore.exceptions import ClientError

        if self._client is None:
            self._client = self.s3.client()
        client, bucket, base = self._client, self.s3.bucket, self.s3.key(case_id)
        local = _digests(staging)
        there = {obj["Key"][len(base) + 1:]: obj["ETag"].strip('"')
                 for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{base}/")
                 for obj in page.get("Contents", [])}
        if MANIFEST in there:
            if there != local:
                raise OutputError(f"{self.s3.url}/{case_id}", "central already holds this case with other content; "
                                                              "a case there is never overwritten")
            return
        for stale in sorted(set(there) - set(local)):  # left by an attempt cut short with another package
            client.delete_object(Bucket=bucket, Key=f"{base}/{stale}")
        for relpath in sorted(local, key=lambda r: (r == MANIFEST, r)):
            try:
                client.put_object(Bucket=bucket, Key=f"{base}/{relpath}", Body=(staging / relpath).read_bytes(),
                                  ContentMD5=base64.b64encode(bytes.fromhex(local[relpath])).decode())
            except ClientError as exc:
                raise OutputError(f"{self.s3.url}/{case_id}/{relpath}", f"upload refused ({exc})") from None


def _digests(folder: Path) -> dict[str, str]:
    """Relative path -> MD5 of every file: what S3 reports as the ETag of a single-part upload."""
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _shift_days(original, deidentified) -> int | None:
    """By how many days the de-identification moved the study's dates; None when it cannot tell."""
    try:
        before, after = (date(int(str(v)[:4]), int(str(v)[4:6]), int(str(v)[6:8])) for v in (original, deidentified))
    except (TypeError, ValueError):
        return None
    return (before - after).days


def _late_verdict(when: datetime) -> str:
    return (f"a verdict given {when:%Y-%m-%d %H:%M} UTC, after the case went to central, was not sent: central never "
            "replaces a case; tell central's data team if the label changed")


def _error_text(exc: BaseException) -> str:
    """The error for the queue page: its own message (a path, an S3 error code), not the client's
    configuration, where credentials live."""
    text = str(exc) if isinstance(exc, CTScreenError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]
