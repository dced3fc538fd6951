"""The screening masks as a DICOM Segmentation: valid, exact, on the source images, filed in their study."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from serving.results.seg import LESION, LUNG, read_segmentation_mask, write_segmentation

from .conftest import PHI, RESULT

MODEL, VERSION = RESULT["model"]["name"], RESULT["model"]["version"]


@pytest.fixture(scope="module")
def seg(ct_series):
    return write_segmentation(ct_series["sources"], ct_series["lesions"], ct_series["lungs"], MODEL, VERSION, volume=ct_series["volume"])


def test_seg_is_valid_dicom(seg, dciodvfy):
    dciodvfy(seg, "SEG")


def test_round_trip_is_exact_for_both_segments(seg, ct_series, tmp_path):
    seg.save_as(tmp_path / "seg.dcm")
    for dataset in (seg, pydicom.dcmread(tmp_path / "seg.dcm")):
        masks = read_segmentation_mask(dataset, ct_series["sources"])
        assert set(masks) == {"Lesion", "Lung"}
        assert masks["Lesion"].dtype == np.uint8
        assert np.array_equal(masks["Lesion"], ct_series["lesions"])
        assert np.array_equal(masks["Lung"], ct_series["lungs"])


def test_frames_sit_on_the_source_images_and_reference_them(seg, ct_series):
    sources = ct_series["sources"]
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    referenced = seg.ReferencedSeriesSequence
    assert [str(item.SeriesInstanceUID) for item in referenced] == [str(sources[0].SeriesInstanceUID)]
    listed = {str(item.ReferencedSOPInstanceUID) for item in referenced[0].ReferencedInstanceSequence}

    expected_frames = {(LESION, k) for k in np.flatnonzero(ct_series["lesions"].any(axis=(1, 2)))}
    expected_frames |= {(LUNG, k) for k in np.flatnonzero(ct_series["lungs"].any(axis=(1, 2)))}
    frames = set()
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        assert source_uid in listed
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx([float(v) for v in by_uid[source_uid].ImagePositionPatient], abs=1e-4)
        k = [str(ds.SOPInstanceUID) for ds in sources].index(source_uid)
        frames.add((int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber), k))
    assert frames == expected_frames  # empty frames left out, every other one present once
    assert int(seg.NumberOfFrames) == len(expected_frames)
    assert str(seg.FrameOfReferenceUID) == str(sources[0].FrameOfReferenceUID)


def test_segments_say_what_made_them_and_what_they_are(seg):
    lesion, lung = seg.SegmentSequence
    assert (lesion.SegmentLabel, lung.SegmentLabel) == ("Lesion", "Lung")
    assert seg.SegmentationType == "BINARY"
    for segment in (lesion, lung):
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        assert segment.SegmentAlgorithmName == MODEL
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (MODEL, str(VERSION))
    for segment, snomed in ((lesion, "52988006"), (lung, "39607008")):
        code = segment.SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator) == (snomed, "SCT")
    assert lesion.AnatomicRegionSequence[0].CodeValue == "39607008"  # lesions in the lung


def test_seg_files_into_the_source_study_with_its_patient(seg, ct_series):
    source = ct_series["sources"][0]
    assert str(seg.StudyInstanceUID) == str(source.StudyInstanceUID)
    assert str(seg.SeriesInstanceUID) != str(source.SeriesInstanceUID)
    for keyword, value in PHI.items():
        assert str(seg.get(keyword)) == value, keyword


def test_uids_are_fixed_by_series_and_model_version(seg, ct_series):
    again = write_segmentation(ct_series["sources"], ct_series["lesions"], ct_series["lungs"], MODEL, VERSION)
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (seg.SOPInstanceUID, seg.SeriesInstanceUID)
    newer = write_segmentation(ct_series["sources"], ct_series["lesions"], ct_series["lungs"], MODEL, VERSION + 1)
    assert newer.SOPInstanceUID != seg.SOPInstanceUID and newer.SeriesInstanceUID != seg.SeriesInstanceUID


@pytest.mark.parametrize("empty", ["lesion", "lesion and lung"])
def test_nothing_found_still_gives_a_valid_seg_with_both_segments(ct_series, dciodvfy, empty):
    """A radiologist should see that the model ran and found no lesion: the lesion segment is
    described, without frames (or, with nothing at all to encode, on all-empty frames)."""
    lesions = np.zeros_like(ct_series["lesions"])
    lungs = np.zeros_like(lesions) if "lung" in empty else ct_series["lungs"]
    seg = write_segmentation(ct_series["sources"], lesions, lungs, MODEL, VERSION)
    dciodvfy(seg, f"SEG with {empty} empty")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Lesion", "Lung"]
    lesion_frames = [f for f in seg.PerFrameFunctionalGroupsSequence
                     if f.SegmentIdentificationSequence[0].ReferencedSegmentNumber == LESION]
    assert len(lesion_frames) == (0 if empty == "lesion" else len(ct_series["sources"]))
    masks = read_segmentation_mask(seg, ct_series["sources"])
    assert not masks["Lesion"].any()
    assert np.array_equal(masks["Lung"], lungs)


@pytest.mark.parametrize("bad, message", [
    (lambda m: m * 2, "must hold 0 and 1 only"),
    (lambda m: m.astype(np.float32), "must hold 0 and 1 only"),
    (lambda m: m[:-1], "not one slice per source image"),
])
def test_bad_masks_are_refused(ct_series, bad, message):
    with pytest.raises(ValueError, match=message):
        write_segmentation(ct_series["sources"], bad(ct_series["lesions"]), ct_series["lungs"], MODEL, VERSION)

