"""The volume loader: DICOM series of every transfer syntax, image files, and every bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from ctscreen.errors import InputError
from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from ctscreen.imaging.readers import load_volume

SPACING = (2.5, 0.8, 0.7)


def _series(tmp_path: Path, hu: np.ndarray, name="series", **kwargs) -> Path:
    write_ct_series(hu, SPACING, tmp_path / name, **kwargs)
    return tmp_path / name


def _edit(path: Path, **attributes):
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


@pytest.mark.parametrize("syntax", ["explicit", "deflate", "rle", "jpeg-ls", "j2k-lossless"])
def test_lossless_transfer_syntaxes_decode_exactly(tmp_path, phantom_hu, syntax):
    volume = load_volume(_series(tmp_path, phantom_hu, transfer_syntax=syntax))
    np.testing.assert_array_equal(volume.hu, np.rint(phantom_hu))
    assert volume.spacing_zyx == pytest.approx(SPACING)
    assert volume.metadata.n_files_used == phantom_hu.shape[0]


def test_lossy_jpeg2000_decodes_close(tmp_path, phantom_hu):
    volume = load_volume(_series(tmp_path, phantom_hu, transfer_syntax="j2k", lossy_ratio=5))
    assert volume.metadata.transfer_syntax == "JPEG 2000 Image Compression"
    error = np.abs(volume.hu - phantom_hu)
    assert 0 < error.mean() < 50  # lossy, but the anatomy survives
    assert np.corrcoef(volume.hu.ravel(), phantom_hu.ravel())[0, 1] > 0.99


def test_slices_sorted_by_position_not_by_name_or_instance_number(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    files = sorted(folder.iterdir())
    for k, path in enumerate(files):  # reversed instance numbers and shuffled names
        _edit(path, InstanceNumber=len(files) - k)
    for k, path in enumerate(files):
        path.rename(folder / f"x{(k * 7) % len(files):03d}_{k}.dcm")
    volume = load_volume(folder)
    np.testing.assert_array_equal(volume.hu, np.rint(phantom_hu))
    assert volume.origin[2] == pytest.approx(-SPACING[0] * (phantom_hu.shape[0] - 1))


def test_z_spacing_comes_from_positions_not_slice_thickness(tmp_path, phantom_hu):
    description = SeriesDescription(slice_thickness=5.0)
    volume = load_volume(_series(tmp_path, phantom_hu, description=description))
    assert volume.spacing_zyx[0] == pytest.approx(2.5)
    assert volume.metadata.slice_thickness == 5.0


def test_rescale_applied_per_slice(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    stored = ds.pixel_array.astype(np.int32)
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1000"
    ds.save_as(first)
    volume = load_volume(folder)
    np.testing.assert_allclose(volume.hu[0], stored * 0.5 - 1000)
    np.testing.assert_array_equal(volume.hu[1:], np.rint(phantom_hu[1:]))


def test_picks_axial_ct_series_with_most_slices_and_skips_the_rest(tmp_path, phantom_hu):
    folder = tmp_path / "study"
    write_ct_series(phantom_hu, SPACING, folder / "a")
    write_ct_series(phantom_hu[:4], SPACING, folder / "b")
    scout = write_ct_series(phantom_hu[:1], SPACING, folder / "scout")[0]
    _edit(scout, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    (folder / "notes.txt").write_text("not dicom")
    report = pydicom.dcmread(scout)  # a structured report: same study, no pixels
    for keyword in ("PixelData", "Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient"):
        delattr(report, keyword)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = pydicom.uid.BasicTextSRStorage
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    report.Modality = "SR"
    report.save_as(folder / "report.dcm")
    volume = load_volume(folder)
    big_uid = pydicom.dcmread(next((folder / "a").iterdir())).SeriesInstanceUID
    assert volume.metadata.series_instance_uid == big_uid
    assert volume.shape_zyx == phantom_hu.shape
    assert volume.metadata.n_files_skipped == 4 + 1 + 1 + 1
    assert any(big_uid in w and "series" in w for w in volume.warnings)
    assert any("localizer" in w and "not DICOM" in w for w in volume.warnings)


@pytest.mark.parametrize(
    "make_bad, problem",
    [
        pytest.param(lambda d: d.mkdir(), "empty folder", id="empty-folder"),
        pytest.param(lambda d: (d.mkdir(), (d / "a.txt").write_text("hello")), "no DICOM", id="no-dicom"),
    ],
)
def test_folder_without_series_is_refused(tmp_path, make_bad, problem):
    folder = tmp_path / "in"
    make_bad(folder)
    with pytest.raises(InputError, match=problem) as err:
        load_volume(folder)
    assert err.value.path == folder


def test_folder_with_no_ct_names_the_modalities(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    for path in folder.iterdir():
        _edit(path, Modality="MR")
    with pytest.raises(InputError, match="no CT image series.*MR"):
        load_volume(folder)


def test_truncated_file_is_named(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    victim = sorted(folder.iterdir())[5]
    victim.write_bytes(victim.read_bytes()[:2000])
    with pytest.raises(InputError, match="truncated|cannot decode") as err:
        load_volume(folder)
    assert err.value.path == victim


def test_slices_of_different_sizes_are_refused(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    odd = _series(tmp_path, phantom_hu[:1, :32, :32], name="odd")
    moved = folder / "zz_odd.dcm"
    shutil.move(next(odd.iterdir()), moved)
    ds = pydicom.dcmread(moved)
    ds.SeriesInstanceUID = pydicom.dcmread(next(folder.glob("slice_*"))).SeriesInstanceUID
    ds.ImagePositionPatient = [0, 0, 100]
    ds.save_as(moved)
    with pytest.raises(InputError, match="different sizes") as err:
        load_volume(folder)
    assert err.value.path.parent == folder


def test_slices_of_different_orientations_are_refused(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    _edit(sorted(folder.iterdir())[3], ImageOrientationPatient=[1, 0, 0, 0, 0.9848, -0.1736])
    with pytest.raises(InputError, match="different orientations"):
        load_volume(folder)


def test_missing_slice_is_an_error_unless_allowed(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    sorted(folder.iterdir())[6].unlink()
    with pytest.raises(InputError, match="missing slices.*--allow-gaps"):
        load_volume(folder)
    volume = load_volume(folder, allow_gaps=True)
    assert volume.shape_zyx == phantom_hu.shape  # the gap is interpolated back onto the uniform grid
    np.testing.assert_allclose(volume.hu[6], (np.rint(phantom_hu[5]) + np.rint(phantom_hu[7])) / 2, atol=1)
    assert any("interpolated across 1 gap" in w for w in volume.warnings)


def test_gantry_tilt_is_refused(tmp_path, phantom_hu):
    folder = _series(tmp_path, phantom_hu)
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + k * 2.5 * np.tan(np.radians(15)), z]
        ds.save_as(path)
    with pytest.raises(InputError, match="gantry tilt of 15.0 degrees"):
        load_volume(folder)


def test_file_that_is_not_dicom_or_image_is_refused(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text("not a scan")
    with pytest.raises(InputError, match="not a DICOM file or folder"):
        load_volume(path)
    with pytest.raises(InputError, match="no such file"):
        load_volume(tmp_path / "missing")


def test_corrupt_image_file_is_refused(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="unreadable image file") as err:
        load_volume(path)
    assert err.value.path == path


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_image_files_keep_their_geometry(tmp_path, phantom_hu, suffix):
    image = sitk.GetImageFromArray(phantom_hu)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS-stored, as NIfTI writers often do
    sitk.WriteImage(image, str(tmp_path / f"ct{suffix}"))
    volume = load_volume(tmp_path / f"ct{suffix}")
    np.testing.assert_array_equal(volume.hu, phantom_hu)
    assert volume.spacing_zyx == pytest.approx((2.5, 0.8, 0.7))
    np.testing.assert_allclose(volume.direction, np.diag([-1, -1, 1]))
    assert volume.origin == pytest.approx((10.0, -20.0, 30.0))


def test_real_jpeg2000_series(real_j2k_series):
    volume = load_volume(real_j2k_series)
    assert volume.shape_zyx == (20, 512, 512)
    assert volume.spacing_zyx == pytest.approx((2.0, 0.976562, 0.976562), abs=1e-5)
    assert (volume.hu.min(), volume.hu.max()) == (-1024, 1839)
    assert volume.metadata.transfer_syntax == "JPEG 2000 Image Compression (Lossless Only)"
    assert volume.metadata.manufacturer == "SIEMENS"


def test_real_nrrd_chest(real_chest_ct):
    volume = load_volume(real_chest_ct)
    assert volume.shape_zyx == (48, 512, 512)
    assert volume.spacing_zyx == pytest.approx((5.0, 0.5703, 0.5703), abs=1e-3)
    assert (volume.hu.min(), volume.hu.max()) == (-1024, 3071)
