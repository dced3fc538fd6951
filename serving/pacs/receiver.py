"""The DICOM C-STORE receiver (SCP) a PACS or a modality pushes studies to.

Only the calling AE titles listed are let in, and only when they call this receiver by its own AE
title. Each instance is spooled as it came over the wire (not decoded and re-encoded: compressed
pixel data stays as sent), through a temporary file renamed into place, so whoever reads the spool
never sees half a file. The C-STORE succeeds only once the file is in place and ``on_instance``
has taken it; otherwise the sender gets a failure status and may retry.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from serving.pacs.errors import PacsError

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGLosslessSV1, JPEGLossless, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000,
    HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K, RLELossless, JPEGBaseline8Bit, JPEGExtended12Bit,
]

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # the spool could not be written or on_instance failed: a retry may succeed
DOES_NOT_MATCH = 0xA900  # the dataset is not the instance the request announced
CANNOT_UNDERSTAND = 0xC000  # undecodable, or a UID missing or unusable as a file name

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True)
class Arrival:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    path: Path
    calling_ae: str
    received: datetime


def safe_uid(value: object) -> bool:
    """A UID that is also safe as a file name: digits and dots only, at most 64 characters."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None


class StoreReceiver:
    """``on_instance`` runs on pynetdicom's association threads, possibly several at once: it must
    be thread-safe, and quick (the sender waits for the C-STORE response)."""

    def __init__(self, ae_title: str, port: int, allowed_callers: Iterable[str], spool: str | Path,
                 on_instance: Callable[[Arrival], None], host: str = "127.0.0.1",
                 on_refused: Callable[[str], None] | None = None):
        if isinstance(allowed_callers, str):
            raise TypeError("allowed_callers is a list of AE titles, not one string")
        self.allowed_callers = [title.strip() for title in allowed_callers]
        if not self.allowed_callers or not all(self.allowed_callers):
            raise ValueError("allowed_callers must name the calling AE titles to accept (an empty list accepts none)")
        self.ae_title = ae_title.strip()
        self.host = host
        self.requested_port = port
        self.spool = Path(spool)
        self.on_instance = on_instance
        self.on_refused = on_refused
        self.refused = 0  # associations refused for their AE titles
        self._lock = threading.Lock()
        self._ae: AE | None = None
        self._server = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return self._server.server_address[1]

    def start(self) -> StoreReceiver:
        if self._server is not None:
            return self
        ae = AE(self.ae_title)
        ae.require_called_aet = True
        ae.require_calling_aet = self.allowed_callers
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._server = ae.start_server((self.host, self.requested_port), block=False, evt_handlers=[
                (evt.EVT_C_STORE, self._store), (evt.EVT_REJECTED, self._rejected)])
        except OSError as exc:
            raise PacsError(f"DICOM receiver {self.ae_title}: cannot listen on {self.host}:{self.requested_port} ({exc.strerror})") from None
        self._ae = ae
        log.info("DICOM receiver %s listening on %s:%d for %s", self.ae_title, self.host, self.port,
                 ", ".join(self.allowed_callers))
        return self

    def stop(self) -> None:
        if self._ae is not None:
            self._ae.shutdown()
        self._ae = self._server = None

    def __enter__(self) -> StoreReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _rejected(self, event) -> None:
        requestor = event.assoc.requestor
        calling, called = requestor.ae_title, requestor.primitive.called_ae_title
        peer = f"{requestor.address}:{requestor.port}"
        if calling in self.allowed_callers and called == self.ae_title:
            log.warning("refused an association from %s at %s: too many associations at once", calling, peer)
            return
        reason = f"calling AE title {calling!r} is not allowed" if calling not in self.allowed_callers \
            else f"it called {called!r}, not {self.ae_title!r}"
        log.warning("refused an association from %s: %s", peer, reason)
        with self._lock:
            self.refused += 1
        if self.on_refused is not None:
            try:
                self.on_refused(calling)
            except Exception:
                log.exception("on_refused failed")

    def _store(self, event) -> int:
        calling = event.assoc.requestor.ae_title
        announced = event.request.AffectedSOPInstanceUID
        try:
            dataset = event.dataset
            uids = {keyword: dataset.get(keyword) for keyword in _REQUIRED_UIDS}
        except Exception as exc:  # pydicom raises many types on a corrupt dataset
            log.warning("refused instance %s from %s: undecodable dataset (%s: %s)", announced, calling, type(exc).__name__, exc)
            return CANNOT_UNDERSTAND
        unusable = [f"{keyword} {value!r}" for keyword, value in uids.items() if not safe_uid(value)]
        if unusable:
            log.warning("refused instance %s from %s: %s missing or not a UID", announced, calling, ", ".join(unusable))
            return CANNOT_UNDERSTAND
        study, series, sop = (str(uids[keyword]) for keyword in _REQUIRED_UIDS)
        if sop != announced:
            log.warning("refused instance %s from %s: the dataset's SOPInstanceUID is %s", announced, calling, sop)
            return DOES_NOT_MATCH
        try:
            path = self._write(study, sop, event.encoded_dataset())
        except OSError as exc:
            log.error("cannot spool instance %s from %s: %s", sop, calling, exc)
            return OUT_OF_RESOURCES
        arrival = Arrival(study, series, sop, str(event.request.AffectedSOPClassUID), path, calling,
                          datetime.now(timezone.utc))
        try:
            self.on_instance(arrival)
        except Exception:
            log.exception("on_instance failed for instance %s from %s; refused it", sop, calling)
            path.unlink(missing_ok=True)
            return OUT_OF_RESOURCES
        return SUCCESS

    def _write(self, study: str, sop: str, encoded: bytes) -> Path:
        folder = self.spool / study
        folder.mkdir(mode=0o700, exist_ok=True)
        target = folder / f"{sop}.dcm"
        fd, partial = tempfile.mkstemp(dir=folder, prefix=f".{sop}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(encoded)
                out.flush()
                os.fsync(out.fileno())  # the sender deletes its copy once told it is stored
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return target
