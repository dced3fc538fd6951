"""The screened study's source CT series as pydicom datasets, and the screening masks on its slices.

The result objects (SEG, SR) reference the very images the loader read, so they are read again
here by SeriesInstanceUID, headers only (SEG and SR need no pixels). highdicom pairs mask frames
with source images in list order, so the images come sorted as ``load_volume`` sorts its slices:
by ImagePositionPatient projected on the slice normal, lowest first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ctscreen.errors import InputError
from ctscreen.imaging.dicom_files import is_dicom_file, list_files
from ctscreen.imaging.volume import CTVolume

POSITION_TOLERANCE_MM = 0.01  # in-plane agreement of the mask grid's origin with the source images'
# Type 2 patient and study attributes (present, possibly empty) that SEG and SR copy from their source
# what a SEG or SR needs to reference an image and place it in its study
REFERENCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                       "StudyDate", "StudyTime", "StudyID", "AccessionNumber")


def read_source_series(folder: str | Path, series_instance_uid: str | None) -> list[Dataset]:
    """The CT images of ``series_instance_uid`` under ``folder`` (headers only), localizers left
    out, sorted by position along the slice normal. Type 2 patient and study attributes a
    non-conformant scanner left out are added empty here (never in the files), as the result
    objects must carry them; images without the UIDs a reference needs are refused."""
    folder = Path(folder)
    if not series_instance_uid:
        raise InputError(folder, "the series has no SeriesInstanceUID, so no SEG or SR can reference it")
    images = []
    for path in list_files(folder):
        ds = _header(path)
        if ds is None or str(ds.get("SeriesInstanceUID", "")) != series_instance_uid or not _is_ct_image(ds):
            continue
        missing = [keyword for keyword in REFERENCE_UIDS if not ds.get(keyword)]
        if missing:
            raise InputError(path, f"no {', '.join(missing)}, so no SEG or SR can reference this image")
        for keyword in PATIENT_STUDY_TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")
        try:
            position = float(_normal(ds) @ np.array(ds.ImagePositionPatient, dtype=float))
        except (TypeError, ValueError) as exc:
            raise InputError(path, f"ImagePositionPatient and ImageOrientationPatient give no slice position ({exc})") from None
        images.append((position, path, ds))
    if not images:
        raise InputError(folder, f"no CT images of series {series_instance_uid}")
    images.sort(key=lambda item: item[0])
    positions = np.array([position for position, _, _ in images])
    duplicate = np.flatnonzero(np.diff(positions) < 1e-3)
    if duplicate.size:
        raise InputError(images[duplicate[0] + 1][1],
                         f"two images of series {series_instance_uid} at position {positions[duplicate[0]]:.3f} mm")
    return [ds for _, _, ds in images]


def _header(path: Path) -> Dataset | None:
    """The file's header, None for a file that is not DICOM."""
    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise InputError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from None


def _is_ct_image(ds: Dataset) -> bool:
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    return (
        ds.get("Modality") == "CT"
        and "ImagePositionPatient" in ds
        and "ImageOrientationPatient" in ds
        and "LOCALIZER" not in image_type
        and "SCOUT" not in image_type
    )


def _normal(ds: Dataset) -> np.ndarray:
    orientation = np.array(ds.ImageOrientationPatient, dtype=float)
    return np.cross(orientation[:3], orientation[3:])


def slice_positions(source_datasets: list[Dataset]) -> np.ndarray:
    """Each image's ImagePositionPatient projected on the first image's slice normal (mm)."""
    normal = _normal(source_datasets[0])
    return np.array([normal @ np.array(ds.ImagePositionPatient, dtype=float) for ds in source_datasets])


def mask_on_source(mask: np.ndarray, volume: CTVolume, source_datasets: list[Dataset]) -> np.ndarray:
    """``mask``, on ``volume``'s grid, as one slice per source image in their order.

    Where the loader kept the slices as they were this is ``mask`` itself; where it resampled an
    uneven stack to a uniform spacing each source image takes the mask slice nearest its position.
    A source image farther than one mask spacing from every mask slice, or another in-plane grid,
    means the mask is not of this series and is refused.
    """
    mask = np.asarray(mask)
    if mask.shape != volume.shape_zyx:
        raise ValueError(f"mask of shape {mask.shape} is not on the volume's grid {volume.shape_zyx}")
    first = source_datasets[0]
    if (int(first.Rows), int(first.Columns)) != mask.shape[1:]:
        raise ValueError(f"mask slices of {mask.shape[1]}x{mask.shape[2]} on source images of {first.Rows}x{first.Columns}")
    series = volume.metadata.series_instance_uid
    if series is not None and series != first.SeriesInstanceUID:
        raise ValueError(f"mask of series {series} given with source images of series {first.SeriesInstanceUID}")
    normal = np.asarray(volume.direction, dtype=float)[:, 2]
    if not np.allclose(normal, _normal(first), atol=1e-3):
        raise ValueError(f"mask grid's slice normal {list(normal)} is not the source images' {list(_normal(first))}")
    origin = np.asarray(volume.origin, dtype=float)
    first_position = np.array(first.ImagePositionPatient, dtype=float)
    in_plane = (first_position - origin) - ((first_position - origin) @ normal) * normal
    if np.linalg.norm(in_plane) > POSITION_TOLERANCE_MM:
        raise ValueError(f"mask grid's origin {list(origin)} is not in line with the first source image at {list(first_position)}")

    spacing = float(volume.spacing_zyx[0])
    offsets = (slice_positions(source_datasets) - origin @ normal) / spacing
    nearest = np.clip(np.rint(offsets).astype(int), 0, mask.shape[0] - 1)
    off_grid = np.flatnonzero(np.abs(offsets - nearest) > 1 + 1e-6)
    if off_grid.size:
        k = int(off_grid[0])
        raise ValueError(f"source image {k} ({source_datasets[k].SOPInstanceUID}) lies {abs(offsets[k] - nearest[k]) * spacing:.2f} mm "
                         f"from the nearest mask slice: the mask does not cover this series")
    return mask[nearest]


def result_uid(source_datasets: list[Dataset], model_name: str, model_version: int | str, what: str) -> str:
    """A UID fixed by the source series, the model and what it names, so that sending the same
    result again replaces the PACS's copy instead of adding a second one."""
    first = source_datasets[0]
    return generate_uid(entropy_srcs=[str(first.StudyInstanceUID), str(first.SeriesInstanceUID), model_name, str(model_version), what])
