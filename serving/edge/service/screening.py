"""Screening one complete study at the site: the chest CT series chosen by the loader's rules, the
release in service on this node (through its Triton; in process only where Triton is not there,
and then said), the SEG and SR back to the PACS, masks and key slices kept for the study page.

A study the loader refuses (another modality, a scout only, missing slices, a corrupt file) is
recorded as not screenable with the loader's reason; anything else that goes wrong marks it failed
with its reason and the traceback in the log; neither stops the next study."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydicom import Dataset

from ctscreen.errors import CTScreenError, InputError
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.volume import write_mask
from ctscreen.inference.screen import Screening, key_slices, screen_volume
from serving.edge.service.config import ServiceConfig
from serving.edge.service.key_slices import write_key_slices
from serving.edge.service.metrics import ServiceMetrics, reason_label
from serving.edge.service.store import ResultsStore, Status, Study, ct_digest, utcnow
from serving.edge.state import serving_version
from serving.pacs.dicomweb import DicomWebClient
from serving.pacs.sender import send_instances
from serving.results.report import write_report
from serving.results.seg import write_segmentation
from serving.results.source import read_source_series
from serving.triton.client import serving_pair
from serving.triton.repository import release_bundle

log = logging.getLogger("ctscreen.edge.service")


class ResultsDestination(Protocol):
    def store(self, datasets: list[Dataset]) -> None: ...


@dataclass
class CStoreDestination:
    host: str
    port: int
    called_aet: str
    calling_aet: str

    def store(self, datasets: list[Dataset]) -> None:
        send_instances(datasets, self.host, self.port, self.called_aet, self.calling_aet)


@dataclass
class StowDestination:
    url: str
    auth: tuple[str, str] | None

    def store(self, datasets: list[Dataset]) -> None:
        with DicomWebClient(self.url, self.auth) as client:
            client.store(datasets)


def results_destination(config: ServiceConfig) -> ResultsDestination:
    if config.results_to is not None:
        calling = config.receiver.ae_title if config.receiver else "CTSCREEN"
        return CStoreDestination(config.results_to.host, config.results_to.port, config.results_to.ae_title, calling)
    return StowDestination(config.pacs.url, config.pacs.credentials())


class NoRelease(Exception):
    """No release is in service on this node yet: the study waits in the queue."""


class Screener:
    def __init__(self, config: ServiceConfig, store: ResultsStore, metrics: ServiceMetrics, destination: ResultsDestination):
        self.config, self.store, self.metrics, self.destination = config, store, metrics, destination
        self._models: tuple[int, object, object] | None = None  # (version, bundle, predictor) in service

    def spool(self, study: Study) -> Path:
        return self.config.state_dir / "spool" / study.study_uid

    def results_dir(self, study_id: int) -> Path:
        return self.config.state_dir / "results" / str(study_id)

    def models(self):
        version = serving_version(self.config.agent_state_dir)
        if version is None:
            raise NoRelease("no release is in service on this node yet")
        if self._models is None or self._models[0] != version:
            bundle = release_bundle(self.config.repository, version)
            predictor = serving_pair(self.config.triton_url, self.config.repository, version, self.config.triton_protocol)
            self._models = (version, bundle, predictor)
        return self._models

    def screen(self, study_id: int) -> str:
        """Screens the study (taken from the queue); its new status."""
        study = self.store.study(study_id)
        with self.store.session() as session:
            digest = ct_digest(session.get(Study, study_id).instances)
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        try:
            volume = load_volume(self.spool(study))
            timings["load"] = round(time.perf_counter() - clock, 3)
            version, bundle, predictor = self.models()
            screening = screen_volume(volume, bundle, predictor)
            timings.update(screening.timings_s)
            clock = time.perf_counter()
            sources = read_source_series(self.spool(study), volume.metadata.series_instance_uid)
            result = self._result(screening, bundle.name, version)
            seg = write_segmentation(sources, screening.lesions, screening.lungs, bundle.name, version, volume=volume)
            sr = write_report(sources, result, seg)
            timings["dicom_results"] = round(time.perf_counter() - clock, 3)
            clock = time.perf_counter()
            self.destination.store([seg, sr])
            timings["store_results"] = round(time.perf_counter() - clock, 3)
            stored_at = utcnow()
            slices = self._keep(study_id, screening)
        except NoRelease as waiting:
            return self._finish(study_id, Status.queued, str(waiting))
        except InputError as refused:  # named by the file within the study, not the spool's path
            one_file = refused.path != self.spool(study)
            reason = f"{refused.path.name}: {refused.problem}" if one_file else refused.problem
            self.metrics.not_screenable.labels(self.config.site, reason_label(refused.problem, one_file)).inc()
            self.metrics.screenings.labels(self.config.site, "none", Status.not_screenable.value).inc()
            return self._finish(study_id, Status.not_screenable, reason, digest=digest)
        except CTScreenError as error:
            log.error("screening study %d failed: %s", study_id, error)
            self.metrics.screenings.labels(self.config.site, "none", Status.failed.value).inc()
            return self._finish(study_id, Status.failed, str(error))
        except Exception as error:  # a bug: logged with its traceback, the study marked, the service goes on
            log.exception("screening study %d failed", study_id)
            self.metrics.screenings.labels(self.config.site, "none", Status.failed.value).inc()
            return self._finish(study_id, Status.failed, f"internal error: {type(error).__name__}: {error}")

        for stage, seconds in timings.items():
            self.metrics.stage_seconds.labels(self.config.site, stage).observe(seconds)
        self.metrics.arrival_to_results.labels(self.config.site).observe((stored_at - study.last_arrival).total_seconds())
        self.metrics.screenings.labels(self.config.site, "positive" if screening.positive else "negative", Status.screened.value).inc()
        inputs = _inputs(screening)
        if inputs["slice_thickness_mm"] is not None:
            self.metrics.slice_thickness.labels(self.config.site).observe(inputs["slice_thickness_mm"])
        if inputs["lung_hu_mean"] is not None:
            self.metrics.lung_hu.labels(self.config.site).observe(inputs["lung_hu_mean"])
        self.metrics.scanners.labels(self.config.site, inputs["scanner"] or "unknown").inc()
        served = predictor.served_by.get("backend", "unknown")
        return self._finish(study_id, Status.screened, None if served == "triton" else f"screened in process ({served}): Triton was unavailable",
                            digest=digest, series_uid=volume.metadata.series_instance_uid, model_name=bundle.name, model_version=version,
                            served_by=served, probability=result["covid_probability"], positive=screening.positive,
                            threshold=screening.threshold, lesion_ml=screening.lesion_volume_ml, lung_ml=screening.lung_volume_ml,
                            key_slices=json.dumps(slices), timings=json.dumps(timings), inputs=json.dumps(inputs),
                            seg_uid=str(seg.SOPInstanceUID), sr_uid=str(sr.SOPInstanceUID))

    @staticmethod
    def _result(screening: Screening, name: str, version: int) -> dict:
        return {"covid_probability": round(screening.covid_probability, 6), "positive": screening.positive,
                "threshold": screening.threshold, "lesion_volume_ml": screening.lesion_volume_ml,
                "lung_volume_ml": screening.lung_volume_ml, "model": {"name": name, "version": version}}

    def _keep(self, study_id: int, screening: Screening) -> list[int]:
        """Masks (for the case sent to central) and key slices (for the study page)."""
        folder = self.results_dir(study_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_mask(screening.volume, screening.lesions, folder / "lesion_mask.nii.gz")
        write_mask(screening.volume, screening.lungs, folder / "lung_mask.nii.gz")
        slices = key_slices(screening.lesions)
        write_key_slices(screening.volume.hu, screening.lesions, screening.lungs, slices, folder)
        return slices

    def _finish(self, study_id: int, status: Status, reason: str | None, digest: str | None = None, **result) -> str:
        with self.store.session() as session:
            study = session.get(Study, study_id)
            if study.status != Status.screening.value:  # new instances came meanwhile: it will be screened again
                return study.status
            study.status, study.reason = status.value, reason
            if status in (Status.screened, Status.not_screenable):
                study.completed_at = utcnow()
                study.screenings += 1
            if digest is not None and status == Status.screened:
                study.screened_digest = digest
            for name, value in result.items():
                setattr(study, name, value)
            return study.status


def _inputs(screening: Screening) -> dict:
    """The drift figures of one input: which scanner, how thick the slices, HU inside the lungs."""
    metadata = screening.volume.metadata
    inside = screening.volume.hu[screening.lungs.astype(bool)]
    return {"scanner": metadata.model or metadata.manufacturer, "manufacturer": metadata.manufacturer,
            "slice_thickness_mm": metadata.slice_thickness,
            "lung_hu_mean": round(float(inside.mean()), 1) if inside.size else None,
            "lung_hu_std": round(float(inside.std()), 1) if inside.size else None,
            "spacing_zyx_mm": [round(float(s), 3) for s in screening.volume.spacing_zyx]}
