"""What central operations watch of a site's screening service (Prometheus): screenings by result
and status, per-stage latency, queue lengths, studies not screenable by reason, physicians'
agreement with the model, the positive rate, and the inputs' drift figures (slice thickness,
scanner, HU inside the lungs). One registry per service, so several run in one process (tests)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320)
NOT_SCREENABLE_REASONS = {  # a short, bounded label from the loader's message about a study (the full reason is in the store)
    "no CT image series": "not-ct",
    "no DICOM files": "not-dicom",
    "missing": "missing-slices",
    "gap": "missing-slices",
}


def reason_label(reason: str, one_file: bool) -> str:
    """``one_file``: the loader named a file of the study (its header or pixels are unusable)."""
    if one_file:
        return "corrupt"
    for fragment, label in NOT_SCREENABLE_REASONS.items():
        if fragment in reason:
            return label
    return "other"


class ServiceMetrics:
    def __init__(self, site: str, counts=None):
        """``counts()``: {"studies": {status: n}, "central_pending": n, "positive_rate": x, "agreement": x},
        read at each scrape so gauges are never stale."""
        self.site = site
        self.registry = CollectorRegistry()
        r = self.registry
        self.screenings = Counter("ctscreen_edge_screenings", "Studies screened or refused, by result and status",
                                  ["site", "result", "status"], registry=r)
        self.not_screenable = Counter("ctscreen_edge_not_screenable", "Studies not screenable, by reason", ["site", "reason"], registry=r)
        self.stage_seconds = Histogram("ctscreen_edge_stage_seconds", "Time per screening stage", ["site", "stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.arrival_to_results = Histogram("ctscreen_edge_arrival_to_results_seconds",
                                            "From a study's last instance arriving to its results stored in the PACS",
                                            ["site"], buckets=STAGE_BUCKETS, registry=r)
        self.instances = Counter("ctscreen_edge_instances_received", "DICOM instances received", ["site", "source"], registry=r)
        self.duplicates = Counter("ctscreen_edge_duplicate_studies", "Studies sent again unchanged (not screened again)", ["site"], registry=r)
        self.refused_callers = Counter("ctscreen_edge_refused_associations", "DICOM associations refused for their AE titles",
                                       ["site"], registry=r)
        self.verdicts = Counter("ctscreen_edge_verdicts", "Physicians' verdicts, agreeing with the model's call or not",
                                ["site", "agreement"], registry=r)
        self.slice_thickness = Histogram("ctscreen_edge_input_slice_thickness_mm", "Slice thickness of screened series", ["site"],
                                         buckets=(0.5, 1, 1.5, 2, 3, 5, 7.5, 10), registry=r)
        self.lung_hu = Histogram("ctscreen_edge_input_lung_hu_mean", "Mean HU inside the lung region of screened series", ["site"],
                                 buckets=(-950, -900, -850, -800, -750, -700, -650, -600, -500), registry=r)
        self.scanners = Counter("ctscreen_edge_input_scanner", "Screened series by scanner model", ["site", "scanner"], registry=r)
        if counts is not None:
            r.register(_Snapshot(site, counts))

    def exposition(self) -> bytes:
        """This service's metrics and the process-wide ones (Triton fallbacks among them)."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)


class _Snapshot:
    """Gauges read from the results store when scraped."""

    def __init__(self, site: str, counts):
        self.site, self.counts = site, counts

    def collect(self):
        now = self.counts()
        studies = GaugeMetricFamily("ctscreen_edge_studies", "Studies in the results store by status", labels=["site", "status"])
        for status, n in now["studies"].items():
            studies.add_metric([self.site, status], n)
        yield studies
        queue = GaugeMetricFamily("ctscreen_edge_queue_length", "Work waiting: studies to screen, cases to send to central",
                                  labels=["site", "queue"])
        queue.add_metric([self.site, "screening"], now["studies"]["queued"] + now["studies"]["receiving"])
        queue.add_metric([self.site, "central"], now["central_pending"])
        yield queue
        for name, key, text in (("ctscreen_edge_positive_rate", "positive_rate", "Share of screened studies called positive"),
                                ("ctscreen_edge_physician_agreement", "agreement", "Share of verdicts agreeing with the model")):
            gauge = GaugeMetricFamily(name, text, labels=["site"])
            if now[key] is not None:
                gauge.add_metric([self.site], now[key])
            yield gauge

    def describe(self):
        return []
