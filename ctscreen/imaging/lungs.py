"""Classical lung-region extraction, the stand-in until a trained lung-region model ships.

A plain air threshold cuts out exactly what screening needs: COVID-19 lesions sit against the
pleura, so a subpleural consolidation is as dense as the chest wall and falls outside the mask.
The lung surface against the chest wall is convex, so such a lesion shows as a dent in it: on each
axial slice, the part of each lung's convex hull that the lung does not fill is restored where it
lies on the outside of both lungs together (the chest-wall side), and left out where it lies
between the lungs (heart, aorta, hilum, spine). Holes (vessels, nodules) are then filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from ctscreen.errors import InputError
from ctscreen.imaging.resample import resample_mask_like, resample_volume
from ctscreen.imaging.volume import CTVolume

WORKING_SPACING_ZYX = (2.5, 1.0, 1.0)
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class LungExtractionParameters:
    body_threshold_hu: float = -500.0  # soft tissue and bone vs air
    air_threshold_hu: float = -400.0  # aerated lung, emphysema and airways
    min_lung_ml: float = 20.0  # smaller air pockets are bowel gas or noise
    second_lung_ratio: float = 0.15  # a second component this large relative to the first is the other lung
    airway_max_area_mm2: float = 600.0  # a small air section near the midline is the trachea or a main bronchus
    airway_max_offset_mm: float = 30.0
    pleural_edge_fraction: float = 0.5  # share of a dent's opening that must lie on the chest-wall side


def extract_lungs(volume: CTVolume, params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """Lung-region mask (uint8, 0/1) on ``volume``'s own grid, computed on the paper's working grid."""
    if tuple(volume.spacing_zyx) == WORKING_SPACING_ZYX and np.allclose(volume.direction, np.eye(3)):
        return lung_region(volume, params)
    working = resample_volume(volume, WORKING_SPACING_ZYX)
    return resample_mask_like(lung_region(working, params), working, volume)


def lung_region(volume: CTVolume, params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """Lung-region mask computed directly on ``volume``'s grid (best on an axial, LPS-oriented one)."""
    spacing = np.asarray(volume.spacing_zyx, float)
    body = _body(volume.hu > params.body_threshold_hu)
    air = _lung_air(volume, body, params)
    pixel_mm2 = spacing[1] * spacing[2]
    mask = np.zeros_like(air)
    for z in np.flatnonzero(air.any(axis=(1, 2))):
        mask[z] = _slice_lung_region(air[z], body[z], pixel_mm2, spacing[2], params)
    mask = ndi.binary_fill_holes(mask)
    mask = ndi.binary_fill_holes(mask, structure=_IN_PLANE)
    return (mask & body).astype(np.uint8)


def _body(dense: np.ndarray) -> np.ndarray:
    """The patient's body with its inner air filled in, apart from the table and outside air."""
    opened = ndi.binary_opening(dense, structure=_IN_PLANE, iterations=2)
    labels, n = ndi.label(opened)
    if n == 0:
        return np.zeros_like(dense)
    largest = 1 + int(np.argmax(ndi.sum_labels(opened, labels, index=np.arange(1, n + 1))))
    return ndi.binary_fill_holes(labels == largest, structure=_IN_PLANE)


def _lung_air(volume: CTVolume, body: np.ndarray, params: LungExtractionParameters) -> np.ndarray:
    """The one or two largest air regions inside the body: the lungs with their airways."""
    labels, n = ndi.label((volume.hu < params.air_threshold_hu) & body)
    source = volume.source or "volume"
    if n == 0:
        raise InputError(source, "no air inside the body: not a chest CT, or the HU values are not calibrated")
    sizes_ml = np.bincount(labels.ravel(), minlength=n + 1)[1:] * volume.voxel_volume_ml
    order = np.argsort(sizes_ml)[::-1]
    if sizes_ml[order[0]] < params.min_lung_ml:
        raise InputError(source, f"no lung found: the largest air region inside the body is {sizes_ml[order[0]]:.1f} ml")
    keep = [order[0] + 1]
    if n > 1 and sizes_ml[order[1]] >= params.second_lung_ratio * sizes_ml[order[0]]:
        keep.append(order[1] + 1)
    return np.isin(labels, keep)


def _slice_lung_region(air: np.ndarray, body: np.ndarray, pixel_mm2: float, pixel_mm: float, params: LungExtractionParameters) -> np.ndarray:
    midline = float(np.argwhere(body)[:, 1].mean())
    labels, n = ndi.label(air)
    lung = np.zeros_like(air)
    for index, piece in enumerate(ndi.find_objects(labels), start=1):
        component = labels[piece] == index
        centre_x = piece[1].start + float(np.argwhere(component)[:, 1].mean())
        is_airway = component.sum() * pixel_mm2 <= params.airway_max_area_mm2 and abs(centre_x - midline) * pixel_mm <= params.airway_max_offset_mm
        if not is_airway:
            lung[piece] |= component
    if not lung.any():
        return lung
    both_hull_edge = _edge(_convex_hull(lung))
    region = lung.copy()
    columns = np.arange(lung.shape[1])[None, :]
    for side in (lung & (columns < midline), lung & (columns >= midline)):
        if side.any():
            region |= _pleural_dents(side, both_hull_edge, params.pleural_edge_fraction)
    return region


def _pleural_dents(side: np.ndarray, both_hull_edge: np.ndarray, edge_fraction: float) -> np.ndarray:
    """Parts of one lung's hull it does not fill whose opening lies on the outer hull of both lungs."""
    hull = _convex_hull(side)
    hull_edge = _edge(hull)
    outer_edge = ndi.binary_dilation(both_hull_edge, iterations=2)
    dents, n = ndi.label(hull & ~side)
    accepted = np.zeros_like(side)
    for index in range(1, n + 1):
        dent = dents == index
        opening = dent & hull_edge
        if opening.any() and (opening & outer_edge).sum() >= edge_fraction * opening.sum():
            accepted |= dent
    return accepted


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, border_value=0)


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """The filled 2D convex hull of a mask's pixels (the pixel itself when too few to span an area)."""
    points = np.argwhere(mask)
    lo, hi = points.min(0), points.max(0) + 1
    try:
        hull = ConvexHull(points)
    except QhullError:
        return mask.copy()
    rows, cols = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    grid = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(float)
    inside = np.all(grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 0.5, axis=1)
    out = np.zeros_like(mask)
    out[lo[0] : hi[0], lo[1] : hi[1]] = inside.reshape(rows.shape)
    return out | mask
