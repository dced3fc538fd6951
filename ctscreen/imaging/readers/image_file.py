"""NIfTI, NRRD and MetaImage volumes through SimpleITK, geometry (direction included) kept as stored."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from ctscreen.errors import InputError
from ctscreen.imaging.readers import Reader, register_reader
from ctscreen.imaging.volume import CTVolume, SeriesMetadata

SUPPORTED_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def accepts(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUPPORTED_SUFFIXES)


def read_image_file(path: Path) -> CTVolume:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "ERROR" in line or "Exception" in line), reason[-1] if reason else "")
        raise InputError(path, f"unreadable image file ({detail.strip()[:200]})") from None
    if image.GetDimension() != 3:
        raise InputError(path, f"expected a 3D volume, found {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected one value per voxel, found {image.GetNumberOfComponentsPerPixel()}")
    volume = CTVolume.from_sitk(image, metadata=SeriesMetadata(n_files_used=1), source=path)
    if min(volume.shape_zyx) < 1 or min(volume.spacing_zyx) <= 0:
        raise InputError(path, f"degenerate grid: shape {volume.shape_zyx}, spacing {volume.spacing_zyx}")
    return volume


register_reader(Reader("image-file", accepts, lambda path, **_: read_image_file(path)))
