"""The screening result as a DICOM SR measurement report (TID 1500, Comprehensive 3D SR), filed in
the screened study beside the SEG, for the radiologist's viewer and for any system that reads SR.

Three measurement groups: the COVID-19 call (probability, the threshold, Positive / Negative as a
qualitative evaluation; TID 1501), the lesions and the lungs (volume in ml; TID 1411 on the SEG's
segments when there is one, TID 1501 otherwise), each naming the model and its version as the
algorithm. A "Qualitative Evaluations" container (TID 1500 row 12) holds the notice that the result
is for a physician to confirm. The document is PRELIMINARY and UNVERIFIED: no physician has signed it.
"""

from __future__ import annotations

import highdicom as hd
from highdicom.sr.utils import find_content_items
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage, ComprehensiveSRStorage, EnhancedSRStorage

from serving.results.seg import LESION, LUNG, MANUFACTURER
from serving.results.source import result_uid

SR_SERIES_NUMBER = 902
NOTICE = ("Produced by an automated screening model for a physician to confirm; it is not a diagnosis. "
          "Review the images and the lesion and lung segmentation before acting on it.")

COVID19 = Code("840539006", "SCT", "COVID-19")  # disease caused by severe acute respiratory syndrome coronavirus 2
CT_CHEST = Code("24627-2", "LN", "CT Chest")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
PROBABILITY_UNIT = Code("{probability}", "UCUM", "probability")
MILLILITRE = Code("ml", "UCUM", "milliliter")
_SR_CLASSES = {Comprehensive3DSRStorage: hd.sr.Comprehensive3DSR, ComprehensiveSRStorage: hd.sr.ComprehensiveSR,
               EnhancedSRStorage: hd.sr.EnhancedSR}


def _volume(value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=codes.SCT.Volume, value=float(value), unit=MILLILITRE,
                             method=codes.DCM.SumOfSegmentedVoxelMethodForVolume)


def write_report(source_datasets: list[Dataset], result: dict, seg_dataset: Dataset | None = None,
                 series_number: int = SR_SERIES_NUMBER) -> hd.sr.Comprehensive3DSR:
    """The SR of one screening. ``result``: what screening returns (``covid_probability``,
    ``positive``, ``threshold``, ``lesion_volume_ml``, ``lung_volume_ml``, ``model`` with ``name``
    and ``version``); ``seg_dataset``: the SEG written for it, whose segments the volumes then
    reference. It inherits patient and study from the source images, so it files into their study."""
    model_name, model_version = str(result["model"]["name"]), str(result["model"]["version"])

    def uid(what: str) -> str:
        return result_uid(source_datasets, model_name, model_version, what)

    algorithm = hd.sr.AlgorithmIdentification(name=model_name, version=model_version,
                                              parameters=[f"threshold={float(result['threshold']):g}"])
    call = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid("call"), identifier="COVID-19 screening"),
        finding_type=COVID19,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(name=codes.DCM.Probability, value=float(result["covid_probability"]), unit=PROBABILITY_UNIT),
            hd.sr.Measurement(name=codes.DCM.ThresholdValue, value=float(result["threshold"]), unit=PROBABILITY_UNIT),
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(COVID19, codes.SCT.Positive if result["positive"] else codes.SCT.Negative)],
    )
    groups = [call]
    regions = ((LESION, codes.SCT.Lesion, codes.SCT.MorphologicallyAbnormalStructure, result["lesion_volume_ml"]),
               (LUNG, codes.SCT.Lung, codes.SCT.AnatomicalStructure, result["lung_volume_ml"]))
    for number, finding, category, volume in regions:
        common = dict(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(finding.meaning), identifier=finding.meaning),
            finding_type=finding,
            finding_category=category,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)] if number == LESION else None,
            algorithm_id=algorithm,
            measurements=[_volume(volume)],
        )
        if seg_dataset is None:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))
        else:
            segment = hd.sr.ReferencedSegment(
                sop_class_uid=seg_dataset.SOPClassUID, sop_instance_uid=seg_dataset.SOPInstanceUID, segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(source_datasets[0].SeriesInstanceUID),
            )
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment, **common))

    device = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uid("device"), name=model_name, manufacturer_name=MANUFACTURER, model_name=f"{model_name} {model_version}"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=CT_CHEST,
        imaging_measurements=groups,
    )
    evaluations = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    evaluations.ContentSequence = hd.sr.ContentSequence([
        hd.sr.TextContentItem(name=codes.DCM.Comment, value=NOTICE, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS),
    ])
    report[0].ContentSequence.append(evaluations)
    return hd.sr.Comprehensive3DSR(
        evidence=[*source_datasets, *([seg_dataset] if seg_dataset is not None else [])],
        content=report[0],
        series_instance_uid=uid("sr series"),
        series_number=series_number,
        sop_instance_uid=uid("sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=f"AI COVID-19 screening ({model_name} {model_version})"[:64],
    )


def _group(report: hd.sr.MeasurementReport, finding: Code):
    groups = report.get_volumetric_roi_measurement_groups(finding_type=finding) or report.get_image_measurement_groups(finding_type=finding)
    if not groups:
        raise ValueError(f"the report has no measurement group for {finding.meaning}")
    return groups[0]


def _number(group, name: Code) -> float:
    measurements = group.get_measurements(name=name)
    if not measurements:
        raise ValueError(f"the report's measurement group has no {name.meaning}")
    return float(measurements[0].value)


def _text(item: Dataset, name: Code) -> str:
    found = find_content_items(item, name=name, recursive=True)
    if not found:
        raise ValueError(f"the report has no {name.meaning}")
    return str(found[0].TextValue)


def read_report(dataset: Dataset) -> dict:
    """The screening values of an SR ``write_report`` wrote, in ``result``'s keys (the model
    version comes back as text), with the notice under ``notice``."""
    sop_class = dataset.get("SOPClassUID")
    if sop_class not in _SR_CLASSES:
        raise ValueError(f"{dataset.get('SOPInstanceUID', 'the dataset')} is a {getattr(sop_class, 'name', sop_class)}, not an SR document")
    report = _SR_CLASSES[sop_class].from_dataset(dataset).content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise ValueError(f"SR {dataset.SOPInstanceUID} is not a TID 1500 measurement report")
    call = _group(report, COVID19)
    evaluation = call.get_qualitative_evaluations(name=COVID19)
    if not evaluation:
        raise ValueError("the report's COVID-19 group has no Positive / Negative evaluation")
    return {
        "covid_probability": _number(call, codes.DCM.Probability),
        "positive": evaluation[0].value == codes.SCT.Positive,
        "threshold": _number(call, codes.DCM.ThresholdValue),
        "lesion_volume_ml": _number(_group(report, codes.SCT.Lesion), codes.SCT.Volume),
        "lung_volume_ml": _number(_group(report, codes.SCT.Lung), codes.SCT.Volume),
        "model": {"name": _text(call[0], codes.DCM.AlgorithmName), "version": _text(call[0], codes.DCM.AlgorithmVersion)},
        "notice": _text(report[0], codes.DCM.Comment),
    }
