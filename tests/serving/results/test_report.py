"""The screening result as a TID 1500 SR: valid, the same numbers read back, filed in the source study."""

from __future__ import annotations

import highdicom as hd
import pydicom
import pytest
from pydicom.sr.codedict import codes

from serving.results.report import NOTICE, read_report, write_report
from serving.results.seg import LESION, LUNG, write_segmentation

from .conftest import PHI, RESULT


@pytest.fixture(scope="module")
def seg(ct_series):
    model = RESULT["model"]
    return write_segmentation(ct_series["sources"], ct_series["lesions"], ct_series["lungs"], model["name"], model["version"])


def expected(result: dict) -> dict:
    return {**result, "model": {"name": result["model"]["name"], "version": str(result["model"]["version"])}, "notice": NOTICE}


@pytest.mark.parametrize("with_seg", [True, False], ids=["with-seg", "without-seg"])
@pytest.mark.parametrize("result", [
    RESULT,
    {**RESULT, "covid_probability": 0.012345, "positive": False, "lesion_volume_ml": 0.0,
     "model": {"name": "vnet+inception_v3", "version": "12"}},
], ids=["positive", "negative"])
def test_report_is_valid_and_reads_back_the_same(ct_series, seg, dciodvfy, tmp_path, with_seg, result):
    sr = write_report(ct_series["sources"], result, seg if with_seg else None)
    dciodvfy(sr, f"SR {'with' if with_seg else 'without'} SEG")
    sr.save_as(tmp_path / "sr.dcm")
    assert read_report(sr) == expected(result)
    assert read_report(pydicom.dcmread(tmp_path / "sr.dcm")) == expected(result)


def test_report_files_into_the_source_study_as_an_unverified_preliminary(ct_series, seg):
    sr = write_report(ct_series["sources"], RESULT, seg)
    source = ct_series["sources"][0]
    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    assert str(sr.StudyInstanceUID) == str(source.StudyInstanceUID)
    assert str(sr.SeriesInstanceUID) not in (str(source.SeriesInstanceUID), str(seg.SeriesInstanceUID))
    for keyword, value in PHI.items():
        assert str(sr.get(keyword)) == value, keyword
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("COMPLETE", "UNVERIFIED", "PRELIMINARY")
    evidence = {str(uid) for series in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
                for uid in (item.ReferencedSOPInstanceUID for item in series.ReferencedSOPSequence)}
    assert evidence == {str(ds.SOPInstanceUID) for ds in ct_series["sources"]} | {str(seg.SOPInstanceUID)}


def test_volumes_reference_the_seg_segments_and_name_the_model(ct_series, seg):
    report = hd.sr.Comprehensive3DSR.from_dataset(write_report(ct_series["sources"], RESULT, seg)).content
    for finding, number in ((codes.SCT.Lesion, LESION), (codes.SCT.Lung, LUNG)):
        (group,) = report.get_volumetric_roi_measurement_groups(finding_type=finding)
        reference = group.referenced_segment
        assert (reference.referenced_sop_instance_uid, reference.referenced_segment_numbers) == (seg.SOPInstanceUID, [number])
        (volume,) = group.get_measurements(name=codes.SCT.Volume)
        assert volume.unit.value == "ml"
    (call,) = report.get_image_measurement_groups(finding_type=hd.sr.CodedConcept("840539006", "SCT", "COVID-19"))
    assert call.get_measurements(name=codes.DCM.Probability)[0].unit.value == "{probability}"
    names = hd.sr.utils.find_content_items(call[0], name=codes.DCM.AlgorithmName, recursive=True)
    assert [item.TextValue for item in names] == [RESULT["model"]["name"]]


def test_report_uids_are_fixed_by_series_and_model_version(ct_series, seg):
    first, again = (write_report(ct_series["sources"], RESULT, seg) for _ in range(2))
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)
    newer = write_report(ct_series["sources"], {**RESULT, "model": {"name": RESULT["model"]["name"], "version": 8}}, seg)
    assert newer.SOPInstanceUID != first.SOPInstanceUID
    assert first.SOPInstanceUID != seg.SOPInstanceUID


def test_a_report_of_something_else_is_refused(seg):
    with pytest.raises(ValueError, match="not an SR document"):
        read_report(seg)
