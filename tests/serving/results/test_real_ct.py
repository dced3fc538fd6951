"""SEG and SR on a real scanner's series: TotalSegmentator's 20 JPEG 2000 lossless slices."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, generate_uid

from ctscreen.errors import InputError
from ctscreen.imaging.readers import load_volume
from serving.results.report import read_report, write_report
from serving.results.seg import read_segmentation_mask, write_segmentation
from serving.results.source import read_source_series

from .conftest import RESULT


@pytest.fixture
def real_series_with_uids(real_j2k_series, tmp_path):
    """The series as a PACS would hold it: the shipped copy has its SOP class and instance, study
    and series UIDs blanked by de-identification; everything else, JPEG 2000 pixel data included,
    is kept as it is."""
    folder = tmp_path / "real"
    folder.mkdir()
    study, series = generate_uid(entropy_srcs=["real-ct study"]), generate_uid(entropy_srcs=["real-ct series"])
    for path in sorted(real_j2k_series.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.save_as(folder / path.name)
    return folder


def test_the_shipped_copy_without_uids_is_refused(real_j2k_series):
    volume = load_volume(real_j2k_series)
    with pytest.raises(InputError, match="no SeriesInstanceUID, so no SEG or SR can reference it"):
        read_source_series(real_j2k_series, volume.metadata.series_instance_uid)


def test_seg_and_sr_on_the_real_series(real_series_with_uids, dciodvfy):
    volume = load_volume(real_series_with_uids)
    assert volume.metadata.transfer_syntax == "JPEG 2000 Image Compression (Lossless Only)"
    sources = read_source_series(real_series_with_uids, volume.metadata.series_instance_uid)
    assert len(sources) == volume.shape_zyx[0] == 20

    body = volume.hu > -500
    lungs = (volume.hu < -500) & np.pad(np.ones((20, 312, 412), bool), ((0, 0), (100, 100), (50, 50)))  # air inside the body's box
    lesions = np.zeros_like(lungs)
    lesions[6:14, 200:260, 150:230] = (volume.hu[6:14, 200:260, 150:230] > 0) & body[6:14, 200:260, 150:230]
    assert lungs.any() and lesions.any()

    seg = write_segmentation(sources, lesions.astype(np.uint8), lungs.astype(np.uint8), RESULT["model"]["name"], 7, volume=volume)
    dciodvfy(seg, "SEG on the real series")
    masks = read_segmentation_mask(seg, sources)
    assert np.array_equal(masks["Lesion"], lesions)
    assert np.array_equal(masks["Lung"], lungs)

    result = {**RESULT, "lesion_volume_ml": round(float(lesions.sum()) * volume.voxel_volume_ml, 2),
              "lung_volume_ml": round(float(lungs.sum()) * volume.voxel_volume_ml, 1)}
    sr = write_report(sources, result, seg)
    dciodvfy(sr, "SR on the real series")
    assert read_report(sr)["lesion_volume_ml"] == result["lesion_volume_ml"]
