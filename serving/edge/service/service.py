"""The screening service of one site, put together: the DICOM receiver and the DICOMweb poll feed
the arrivals; a scheduler queues complete studies; one worker screens them in arrival order; the
central queue sends confirmed cases; the web app serves the worklist, the study pages and the
viewer. Everything it knows is in the results store and the spool, so a restart loses nothing."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pydicom

from ctscreen.errors import CTScreenError
from ctscreen.imaging.synth import SUBTYPES
from serving.edge.service.arrivals import Arrivals
from serving.edge.service.config import ServiceConfig
from serving.edge.service.metrics import ServiceMetrics
from serving.edge.service.outbox import CentralQueue
from serving.edge.service.polling import DicomWebPoller
from serving.edge.service.screening import Screener, results_destination
from serving.edge.service.store import Outgoing, ResultsStore, Status, Study, utcnow
from serving.pacs.receiver import Arrival, StoreReceiver

log = logging.getLogger("ctscreen.edge.service")


class EdgeService:
    def __init__(self, config: ServiceConfig, tick_s: float = 0.5):
        self.config, self.tick = config, tick_s
        self.spool = config.state_dir / "spool"
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = ResultsStore(config.database)
        self.metrics = ServiceMetrics(config.site, self.counts)
        self.arrivals = Arrivals(self.store, config.quiet_period_s, on_duplicate=lambda uid: self.metrics.duplicates.labels(config.site).inc())
        self.screener = Screener(config, self.store, self.metrics, results_destination(config))
        self.central = None
        if config.central is not None:
            self.central = CentralQueue(self.store, config.central, config.site, config.state_dir, self.metrics)
        self.receiver = None
        if config.receiver is not None:
            r = config.receiver
            self.receiver = StoreReceiver(r.ae_title, r.port, r.allowed_callers, self.spool, self._arrived, host=r.host,
                                          on_refused=lambda calling: self.metrics.refused_callers.labels(config.site).inc())
        self.poller = None
        if config.poll is not None:
            self.poller = DicomWebPoller(config.poll.url, config.poll.credentials(), self.spool, self._fetched, config.quiet_period_s)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # arrivals -------------------------------------------------------------------------------
    def _arrived(self, arrival: Arrival) -> None:
        self.arrivals.record(arrival.study_uid, arrival.series_uid, arrival.sop_uid, arrival.sop_class_uid, arrival.path,
                             f"dimse:{arrival.calling_ae}")
        self.metrics.instances.labels(self.config.site, "dimse").inc()

    def _fetched(self, path: Path, source: str) -> None:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        self.arrivals.record(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.SOPClassUID), path, source)
        self.metrics.instances.labels(self.config.site, source).inc()

    # the loops ------------------------------------------------------------------------------
    def start(self) -> "EdgeService":
        recovered = self.store.recover()
        if recovered:
            log.warning("%d study(ies) were being screened when the service stopped: queued again", recovered)
        if self.receiver is not None:
            self.receiver.start()
        self._spawn("screening", self._screen_loop)
        if self.poller is not None:
            self._spawn("dicomweb-poll", self._poll_loop)
        if self.central is not None:
            self._spawn("central", self._central_loop)
        return self

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=f"ctscreen-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _screen_loop(self) -> None:
        while not self._stop.is_set():
            self.arrivals.complete()
            study_id = self.arrivals.next_queued()
            if study_id is None:
                self._stop.wait(self.tick)
                continue
            status = self.screener.screen(study_id)
            log.info("study %d: %s", study_id, status)
            if status == Status.queued.value:  # no release in service yet: wait before trying again
                self._stop.wait(max(self.tick, 5.0))

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poller.poll()
            except Exception:  # a PACS that is down or answers nonsense must not end the poll
                log.exception("polling %s failed", self.config.poll.url)
            self._stop.wait(self.config.poll_interval_s)

    def _central_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.central.deliver_due()
            except Exception:
                log.exception("sending cases to central failed")
            self._stop.wait(max(self.tick, 1.0))

    def stop(self) -> None:
        self._stop.set()
        if self.receiver is not None:
            self.receiver.stop()
        for thread in self._threads:
            thread.join(timeout=60)
        self.store.close()

    def __enter__(self) -> "EdgeService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # what the pages and metrics read --------------------------------------------------------
    def counts(self) -> dict:
        studies = self.store.count_by_status()
        with self.store.session() as session:
            screened = session.query(Study).filter(Study.status == Status.screened.value)
            total = screened.count()
            positive = screened.filter(Study.positive.is_(True)).count()
            judged = session.query(Study).filter(Study.verdict.is_not(None))
            agreed = judged.filter(Study.verdict == "confirmed").count()
            judged_n = judged.count()
            pending = session.query(Outgoing).filter(Outgoing.state == "pending").count()
        return {"studies": studies, "central_pending": pending, "positive_rate": positive / total if total else None,
                "agreement": agreed / judged_n if judged_n else None}

    def record_verdict(self, study_id: int, verdict: str, finding: str, missed_lesions: bool, note: str | None, user: str) -> Study:
        """The physician's call on a screened study; confirmed or corrected cases go to central."""
        if verdict not in VERDICTS:
            raise VerdictError(f"verdict {verdict!r}: choose {' or '.join(VERDICTS)}")
        if finding not in SUBTYPES:
            raise VerdictError(f"finding {finding!r}: choose from {', '.join(SUBTYPES)}")
        with self.store.session() as session:
            study = session.get(Study, study_id)
            if study is None or study.status != Status.screened.value:
                raise VerdictError(f"study {study_id} is not a screened study")
            agrees = (finding == "covid") == bool(study.positive)
            if (verdict == "confirmed") != agrees:
                raise VerdictError("a confirmation agrees with the model's call and a correction does not: "
                                   f"the model said {'positive' if study.positive else 'negative'}, the finding is {finding}")
            study.verdict, study.verdict_finding, study.missed_lesions = verdict, finding, missed_lesions
            study.verdict_note, study.verdict_by, study.verdict_at = (note or None), user, utcnow()
        self.metrics.verdicts.labels(self.config.site, "agree" if agrees else "disagree").inc()
        if self.central is not None:
            self.central.enqueue(study_id)
        return self.store.study(study_id)


VERDICTS = ("confirmed", "corrected")


class VerdictError(CTScreenError):
    """A verdict that does not fit the study: not screened yet, or a call and finding that disagree."""
