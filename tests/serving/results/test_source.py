"""The source series read back for the result objects, and the masks carried onto its slices."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pydicom
import pytest

from ctscreen.errors import InputError
from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from ctscreen.imaging.readers import load_volume
from serving.results.seg import read_segmentation_mask, write_segmentation
from serving.results.source import mask_on_source, read_source_series, slice_positions

from .conftest import SHAPE_ZYX, SPACING_ZYX, phantom


def test_sources_are_sorted_by_position_as_the_loader_sorts_its_slices(ct_series):
    sources, volume = ct_series["sources"], ct_series["volume"]
    assert len(sources) == volume.shape_zyx[0]
    np.testing.assert_allclose(slice_positions(sources), volume.origin[2] + volume.spacing_zyx[0] * np.arange(len(sources)), atol=1e-3)
    assert [int(ds.InstanceNumber) for ds in sources] == list(range(1, len(sources) + 1))  # file names run the other way
    assert all("PixelData" not in ds for ds in sources)


def test_mask_on_an_even_grid_is_the_mask_itself(ct_series):
    lesions = ct_series["lesions"]
    assert np.array_equal(mask_on_source(lesions, ct_series["volume"], ct_series["sources"]), lesions)


def test_missing_type2_patient_attributes_are_added_empty_in_memory_only(tmp_path):
    hu, _, _ = phantom()
    paths = write_ct_series(hu, SPACING_ZYX, tmp_path / "bare", SeriesDescription())
    before = paths[0].read_bytes()
    sources = read_source_series(tmp_path / "bare", pydicom.dcmread(paths[0]).SeriesInstanceUID)
    assert all(ds.PatientSex == "" and ds.AccessionNumber == "" and ds.StudyID == "" for ds in sources)
    assert paths[0].read_bytes() == before


def test_other_series_and_non_dicom_files_are_left_out(ct_series, tmp_path):
    hu, _, _ = phantom()
    folder = tmp_path / "mixed"
    write_ct_series(hu[:4], SPACING_ZYX, folder / "other", SeriesDescription())
    wanted = write_ct_series(hu, SPACING_ZYX, folder / "wanted", SeriesDescription())
    (folder / "notes.txt").write_text("not DICOM")
    uid = pydicom.dcmread(wanted[0]).SeriesInstanceUID
    assert {str(ds.SeriesInstanceUID) for ds in read_source_series(folder, uid)} == {uid}
    assert len(read_source_series(folder, uid)) == SHAPE_ZYX[0]


def test_refusals_name_the_file_and_the_problem(ct_series, tmp_path):
    folder = ct_series["folder"]
    with pytest.raises(InputError, match="no SeriesInstanceUID"):
        read_source_series(folder, None)
    with pytest.raises(InputError, match=r"no CT images of series 1\.2\.3"):
        read_source_series(folder, "1.2.3")
    hu, _, _ = phantom()
    paths = write_ct_series(hu, SPACING_ZYX, tmp_path / "anonymous", SeriesDescription())
    ds = pydicom.dcmread(paths[3])
    ds.SOPInstanceUID = ""
    ds.save_as(paths[3])
    with pytest.raises(InputError, match=f"{paths[3].name}: no SOPInstanceUID"):
        read_source_series(tmp_path / "anonymous", ds.SeriesInstanceUID)


def write_uneven_series(folder, positions_z) -> tuple:
    """A series whose slices sit at ``positions_z`` (mm), uneven enough for the loader to resample."""
    hu, _, _ = phantom()
    hu = hu[: len(positions_z)]
    paths = write_ct_series(hu, SPACING_ZYX, folder, SeriesDescription())
    for path, z in zip(paths, positions_z):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], f"{z:.4f}"]
        ds.SliceLocation = f"{z:.4f}"
        ds.save_as(path)
    volume = load_volume(folder)
    return volume, read_source_series(folder, volume.metadata.series_instance_uid)


def slice_tags(n: int) -> np.ndarray:
    """A mask whose slice k is marked by a square at column 4 k, so the slice taken is visible."""
    mask = np.zeros((n, SHAPE_ZYX[1], SHAPE_ZYX[2]), np.uint8)
    for k in range(n):
        mask[k, 10:14, 4 * k: 4 * k + 3] = 1
    return mask


@pytest.mark.parametrize("positions_z, expected", [
    # median step 2.5 mm; the loader's grid is 0, 2.5, 5, ... 15 (7 slices): 8.8 is nearest 10, 11.8 and 13.1 nearest 12.5
    ((0.0, 2.5, 5.0, 6.3, 8.8, 11.8, 13.1, 15.6), [0, 1, 2, 3, 4, 5, 5, 6]),
    # median step 3 mm; the last steps shrink to 2 mm, so the loader's grid ends at 12 mm, before the last slice
    ((0.0, 3.0, 6.0, 9.0, 11.0, 13.0), [0, 1, 2, 3, 4, 4]),
])
def test_uneven_spacing_takes_the_nearest_mask_slice(tmp_path, dciodvfy, positions_z, expected):
    volume, sources = write_uneven_series(tmp_path / "uneven", positions_z)
    assert any("uneven slice spacing" in w for w in volume.warnings)
    grid = volume.origin[2] + volume.spacing_zyx[0] * np.arange(volume.shape_zyx[0])
    assert expected == [int(np.argmin(np.abs(grid - p))) for p in slice_positions(sources)]  # the table above is the nearest slice

    tags = slice_tags(volume.shape_zyx[0])
    on_source = mask_on_source(tags, volume, sources)
    assert np.array_equal(on_source, tags[expected])

    seg = write_segmentation(sources, tags, np.ones_like(tags), "unet", 1, volume=volume)
    dciodvfy(seg, "SEG on an uneven series")
    back = read_segmentation_mask(seg, sources)
    assert np.array_equal(back["Lesion"], tags[expected])
    assert np.array_equal(back["Lung"], np.ones((len(sources), *tags.shape[1:]), np.uint8))


def test_a_mask_of_another_grid_is_refused(ct_series):
    volume, sources, lesions = ct_series["volume"], ct_series["sources"], ct_series["lesions"]
    x, y, z = volume.origin
    with pytest.raises(ValueError, match="not on the volume's grid"):
        mask_on_source(lesions[:-1], volume, sources)
    with pytest.raises(ValueError, match="does not cover this series"):
        mask_on_source(lesions, replace(volume, origin=(x, y, z + 40)), sources)
    with pytest.raises(ValueError, match="not in line with the first source image"):
        mask_on_source(lesions, replace(volume, origin=(x + 5, y, z)), sources)
    with pytest.raises(ValueError, match="mask of series 1.2.3 given with source images of series"):
        mask_on_source(lesions, replace(volume, metadata=replace(volume.metadata, series_instance_uid="1.2.3")), sources)
