"""Studies taken from a DICOMweb server (QIDO-RS for what is there, WADO-RS to fetch it), for
sites whose PACS does not push. A study is fetched once its instance count stopped changing for
the quiet period, and again only if that count changes later."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from serving.pacs.dicomweb import DicomWebClient
from serving.pacs.errors import PacsError

log = logging.getLogger("ctscreen.edge.service")


class DicomWebPoller:
    def __init__(self, url: str, auth, spool: Path, record, quiet_period_s: float, clock=time.monotonic):
        self.url, self.auth, self.spool, self.record = url, auth, spool, record
        self.quiet, self.clock = quiet_period_s, clock
        self.seen: dict[str, tuple[int, float]] = {}  # study -> (instance count, since when)
        self.fetched: dict[str, int] = {}  # study -> instance count when fetched

    def poll(self) -> int:
        """One QIDO round; the studies fetched."""
        fetched = 0
        with DicomWebClient(self.url, self.auth) as client:
            for study in client.studies(ModalitiesInStudy=["CT"]):
                uid, count = study["StudyInstanceUID"], int(study.get("NumberOfStudyRelatedInstances") or 0)
                previous = self.seen.get(uid)
                if previous is None or previous[0] != count:
                    self.seen[uid] = (count, self.clock())
                    continue
                if self.fetched.get(uid) == count or self.clock() - previous[1] < self.quiet:
                    continue
                try:
                    paths = client.retrieve_study(uid, self.spool / uid)
                except PacsError as error:
                    log.warning("cannot fetch study from %s: %s", self.url, error)
                    continue
                for path in paths:
                    self.record(path, "dicomweb")
                self.fetched[uid] = count
                fetched += 1
        return fetched
