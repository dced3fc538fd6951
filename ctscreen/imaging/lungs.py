"""Classical lung-region extraction, the stand-in until a trained lung-region model ships.

A plain air threshold cuts out exactly what screening needs: COVID-19 lesions sit against the
pleura, so consolidation there is as dense as the chest wall and is lost. Each lung is therefore
closed with a ball larger than such lesions and its holes filled, which restores juxta-pleural and
subpleural lesions, vessels and nodules without bridging the mediastinum between the two lungs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ctscreen.errors import InputError
from ctscreen.imaging.resample import resample_mask_like, resample_volume
from ctscreen.imaging.volume import CTVolume

WORKING_SPACING_ZYX = (2.5, 1.0, 1.0)
_SLICEWISE = np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], bool)


@dataclass(frozen=True)
class LungExtractionParameters:
    body_threshold_hu: float = -500.0  # soft tissue and bone vs air
    air_threshold_hu: float = -400.0  # aerated lung, emphysema and airways
    closing_radius_mm: float = 15.0  # larger than the subpleural lesions to recover
    min_lung_ml: float = 20.0  # smaller air pockets are bowel gas or noise
    second_lung_ratio: float = 0.15  # a second component this large relative to the first is the other lung


def extract_lungs(volume: CTVolume, params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """Lung-region mask (uint8, 0/1) on ``volume``'s own grid, computed on the paper's working grid."""
    if tuple(volume.spacing_zyx) == WORKING_SPACING_ZYX and np.allclose(volume.direction, np.eye(3)):
        return lung_region(volume, params)
    working = resample_volume(volume, WORKING_SPACING_ZYX)
    return resample_mask_like(lung_region(working, params), working, volume)


def lung_region(volume: CTVolume, params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """Lung-region mask computed directly on ``volume``'s grid."""
    hu = volume.hu
    spacing = np.asarray(volume.spacing_zyx, float)
    body = _body(hu > params.body_threshold_hu)
    air, n = ndi.label((hu < params.air_threshold_hu) & body)
    if n == 0:
        raise InputError(volume.source or "volume", "no air inside the body: not a chest CT, or the HU values are not calibrated")
    sizes_ml = ndi.sum_labels(np.ones_like(air, dtype=np.float32), air, index=np.arange(1, n + 1)) * float(np.prod(spacing)) / 1000
    order = np.argsort(sizes_ml)[::-1]
    if sizes_ml[order[0]] < params.min_lung_ml:
        raise InputError(
            volume.source or "volume",
            f"no lung found: the largest air region inside the body is {sizes_ml[order[0]]:.1f} ml",
        )
    keep = [order[0]]
    if n > 1 and sizes_ml[order[1]] >= params.second_lung_ratio * sizes_ml[order[0]]:
        keep.append(order[1])
    mask = np.zeros(hu.shape, bool)
    for index in keep:
        mask |= _closed_component(air == index + 1, spacing, params.closing_radius_mm)
    return (mask & body).astype(np.uint8)


def _body(dense: np.ndarray) -> np.ndarray:
    """The patient's body with its inner air filled in, apart from the table and outside air."""
    opened = ndi.binary_opening(dense, structure=_SLICEWISE, iterations=2)
    labels, n = ndi.label(opened)
    if n == 0:
        return np.zeros_like(dense)
    largest = 1 + int(np.argmax(ndi.sum_labels(opened, labels, index=np.arange(1, n + 1))))
    return ndi.binary_fill_holes(labels == largest, structure=_SLICEWISE)


def _closed_component(component: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Morphological closing with a ball of ``radius_mm`` (exact, by distance transform), then hole filling."""
    pad = np.ceil(radius_mm / spacing).astype(int) + 1
    coords = np.argwhere(component)
    lo = np.maximum(coords.min(0) - pad, 0)
    hi = np.minimum(coords.max(0) + pad + 1, component.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = np.pad(component[box], [(p, p) for p in pad])
    dilated = ndi.distance_transform_edt(~sub, sampling=spacing) <= radius_mm
    closed = ndi.distance_transform_edt(dilated, sampling=spacing) > radius_mm
    closed = ndi.binary_fill_holes(closed | sub)
    closed = ndi.binary_fill_holes(closed, structure=_SLICEWISE)
    out = np.zeros_like(component)
    out[box] = closed[tuple(slice(p, p + (b - a)) for p, a, b in zip(pad, lo, hi))]
    return out
