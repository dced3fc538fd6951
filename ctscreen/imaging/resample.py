"""Moving voxels between grids: to the paper's 1 x 1 x 2.5 mm working grid and back to a study's own."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from ctscreen.imaging.volume import CTVolume, copy_geometry

AIR_HU = -1024.0


def _oriented(image: sitk.Image) -> sitk.Image:
    """Same voxels, reordered so the index axes run along patient L, P, S (identity direction)."""
    if np.allclose(np.array(image.GetDirection()), np.eye(3).ravel()):
        return image
    return sitk.DICOMOrient(image, "LPS")


def resample_volume(volume: CTVolume, spacing_zyx: tuple[float, float, float]) -> CTVolume:
    """HU resampled linearly onto an LPS-oriented grid of ``spacing_zyx`` covering the same extent."""
    image = _oriented(volume.to_sitk(volume.hu.astype(np.float32, copy=False)))
    out = _resample(image, spacing_zyx, sitk.sitkLinear, AIR_HU)
    return CTVolume.from_sitk(out, metadata=volume.metadata, source=volume.source, warnings=list(volume.warnings))


def resample_mask_like(mask: np.ndarray, mask_grid: CTVolume, target: CTVolume) -> np.ndarray:
    """A label mask on ``mask_grid`` carried onto ``target``'s grid by nearest neighbour."""
    image = mask_grid.to_sitk(mask.astype(np.uint8, copy=False))
    out = sitk.Resample(image, _reference(target), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def resample_mask(mask: np.ndarray, mask_grid: CTVolume, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """A label mask resampled by nearest neighbour exactly as ``resample_volume`` moves its image."""
    image = _oriented(mask_grid.to_sitk(mask.astype(np.uint8, copy=False)))
    return sitk.GetArrayFromImage(_resample(image, spacing_zyx, sitk.sitkNearestNeighbor, 0))


def _reference(volume: CTVolume) -> sitk.Image:
    reference = sitk.Image([int(s) for s in reversed(volume.shape_zyx)], sitk.sitkUInt8)
    copy_geometry(volume, reference)
    return reference


def _resample(image: sitk.Image, spacing_zyx, interpolator, default: float) -> sitk.Image:
    spacing_xyz = tuple(float(s) for s in reversed(spacing_zyx))
    size = [max(1, int(math.floor((n - 1) * s / t + 1e-6)) + 1) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing_xyz)]
    return sitk.Resample(
        image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing_xyz, image.GetDirection(), default, image.GetPixelID()
    )
