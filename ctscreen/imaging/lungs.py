"""Classical lung-region extraction, the stand-in until a trained lung-region model ships.

A plain air threshold cuts out exactly what screening needs: COVID-19 lesions sit against the
pleura, so a subpleural consolidation is as dense as the chest wall and falls outside the mask.
The lung surface against the chest wall is convex, so such a lesion shows as a dent in it: on each
axial slice, the part of each lung's convex hull that the lung does not fill is restored where it
lies on the outside of both lungs together (the chest-wall side), and left out where it lies
between the lungs (heart, aorta, hilum, spine). Each lung is also closed with a small disc, so a
lesion against the hilum, reached only through a narrow inlet, becomes a hole; holes (vessels,
nodules, such lesions) are then filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from ctscreen.errors import InputError
from ctscreen.imaging.resample import resample_mask_like, resample_volume
from ctscreen.imaging.volume import CTVolume

FINEST_SPACING_ZYX = (2.5, 2.0, 2.0)
COARSEST_SPACING_ZYX = (5.0, 4.0, 4.0)
IN_PLANE = np.zeros((3, 3, 3), bool)
IN_PLANE[1] = ndi.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class LungExtractionParameters:
    body_threshold_hu: float = -500.0  # soft tissue and bone vs air
    air_threshold_hu: float = -400.0  # aerated lung, emphysema and airways
    min_lung_ml: float = 20.0  # smaller air pockets are bowel gas or noise
    second_lung_ratio: float = 0.15  # a second component this large relative to the first is the other lung
    airway_max_area_mm2: float = 600.0  # a small air section near the midline is the trachea or a main bronchus
    airway_max_offset_mm: float = 30.0
    pleural_edge_fraction: float = 0.5  # share of a dent's opening that must lie on the chest-wall side
    medial_cone_deg: float = 60.0  # dents within this angle of the midline direction face the mediastinum
    max_dent_ratio: float = 0.6  # a larger dent is the heart or liver inside a crescent of lung base
    closing_radius_mm: float = 10.0  # pockets inside a lung with an opening narrower than this are lesions


def extract_lungs(volume: CTVolume, params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """Lung-region mask (uint8, 0/1) on ``volume``'s own grid, computed on the study's spacing held
    between 2 x 2 x 2.5 mm and 4 x 4 x 5 mm.

    The mask only crops, blanks beyond a 10 mm margin and measures volume, so 2 mm in-plane costs
    under 0.01 Dice against 1 mm and runs three times faster. A grid finer than the study's adds
    voxels, not information: on 3.5 x 3.5 x 5 mm synthetic cases 2 x 2 x 2.5 mm took 3.4 times the
    time for the same figures (held-out lung Dice 0.970 against 0.968, lesion voxels inside 0.863
    against 0.869). Coarser than 4 mm, the body's two-pixel opening breaks thin chest walls."""
    spacing = tuple(float(np.clip(native, finest, coarsest))
                    for native, finest, coarsest in zip(volume.spacing_zyx, FINEST_SPACING_ZYX, COARSEST_SPACING_ZYX))
    if np.allclose(volume.spacing_zyx, spacing) and np.allclose(volume.direction, np.eye(3)):
        return lung_region(volume, params)
    working = resample_volume(volume, spacing)
    return resample_mask_like(lung_region(working, params), working, volume)


def lung_region(volume: CTVolume, params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """Lung-region mask computed directly on ``volume``'s grid (best on an axial, LPS-oriented one)."""
    spacing = np.asarray(volume.spacing_zyx, float)
    body = _body(volume.hu > params.body_threshold_hu)
    air = _lung_air(volume, body, params)
    pixel_mm2 = spacing[1] * spacing[2]
    box = bounding_box(air, margin=3)
    air_box = air[box]
    midlines = _midlines(body)
    mask = np.zeros_like(air)
    for z in np.flatnonzero(air_box.any(axis=(1, 2))):
        midline = midlines[box[0].start + z] - box[2].start
        mask[box][z] = _slice_lung_region(air_box[z], midline, pixel_mm2, spacing[2], params)
    mask = fill_holes(fill_holes(mask), structure=IN_PLANE)
    return (mask & body).astype(np.uint8)


def _body(dense: np.ndarray) -> np.ndarray:
    """The patient's body with its inner air filled in, apart from the table and outside air."""
    opened = ndi.binary_opening(dense, structure=IN_PLANE, iterations=2)
    labels, n = ndi.label(opened)
    if n == 0:
        return np.zeros_like(dense)
    largest = 1 + int(np.argmax(np.bincount(labels.ravel(), minlength=n + 1)[1:]))
    return fill_holes(labels == largest, structure=IN_PLANE)


def fill_holes(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes``, by labelling the background once instead of dilating
    from the border until nothing changes (a fifth of the classical extraction's time went there).

    Holes are background components that touch no face of the array along an axis ``structure``
    connects (``IN_PLANE``: the slice's sides, so holes are filled slice by slice)."""
    structure = ndi.generate_binary_structure(mask.ndim, 1) if structure is None else structure
    labels, n = ndi.label(~mask.astype(bool), structure=structure)
    if n == 0:
        return mask.astype(bool)
    faces = [np.take(labels, [0, -1], axis=axis).ravel() for axis in range(mask.ndim)
             if np.take(structure, [0, -1], axis=axis).any()]
    outside = np.unique(np.concatenate(faces))
    return ~np.isin(labels, outside[outside > 0])


def bounding_box(mask: np.ndarray, margin) -> tuple[slice, ...]:
    """The smallest box around a mask's voxels, grown by ``margin`` voxels (per axis) within the array."""
    coords = np.argwhere(mask)
    lo = np.maximum(coords.min(0) - np.asarray(margin), 0)
    hi = np.minimum(coords.max(0) + np.asarray(margin) + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _midlines(body: np.ndarray) -> np.ndarray:
    """Per slice, the body's mean column: the patient's left-right midline."""
    columns = body.sum(axis=1)  # (z, x)
    counts = np.maximum(columns.sum(axis=1), 1)
    return (columns * np.arange(body.shape[2])).sum(axis=1) / counts


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


def _slice_lung_region(air: np.ndarray, midline: float, pixel_mm2: float, pixel_mm: float, params: LungExtractionParameters) -> np.ndarray:
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
    for side, medial_sign in ((lung & (columns < midline), 1), (lung & (columns >= midline), -1)):
        if side.any():
            region |= _pleural_dents(side, both_hull_edge, medial_sign, params)
            region |= _closing(side, params.closing_radius_mm / pixel_mm)
    return region


def _pleural_dents(side: np.ndarray, both_hull_edge: np.ndarray, medial_sign: int, params: LungExtractionParameters) -> np.ndarray:
    """Parts of one lung's hull it does not fill that face the chest wall rather than the mediastinum.

    A dent faces the chest wall when its opening lies on the outer hull of both lungs, or when it
    sits away from the midline as seen from the lung's centre (a posterior consolidation beside
    the spine) and is smaller than the lung around it; the heart, aorta and hilum sit towards the
    midline, and the heart or liver inside a crescent of lung base is larger than the crescent.
    """
    hull = _convex_hull(side)
    hull_edge = _edge(hull)
    outer_edge = ndi.binary_dilation(both_hull_edge, iterations=2)
    dents, n = ndi.label(hull & ~side)
    if n == 0:
        return np.zeros_like(side)
    opening = np.bincount(dents[hull_edge], minlength=n + 1)
    on_outer = np.bincount(dents[hull_edge & outer_edge], minlength=n + 1)
    rows, cols = np.nonzero(dents)
    labels = dents[rows, cols]
    size = np.maximum(np.bincount(labels, minlength=n + 1), 1)
    centre_y, centre_x = np.argwhere(side).mean(axis=0)
    dy = np.bincount(labels, rows, minlength=n + 1) / size - centre_y
    dx = np.bincount(labels, cols, minlength=n + 1) / size - centre_x
    medial_cosine = medial_sign * dx / np.maximum(np.hypot(dy, dx), 1e-6)
    away_from_midline = (medial_cosine < np.cos(np.radians(params.medial_cone_deg))) & (size <= params.max_dent_ratio * side.sum())
    faces_wall = (on_outer >= params.pleural_edge_fraction * opening) | away_from_midline
    keep = np.flatnonzero((opening > 0) & faces_wall)
    keep = keep[keep > 0]
    return np.isin(dents, keep) if keep.size else np.zeros_like(side)


def _closing(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Exact Euclidean closing with a disc: narrow inlets (a lesion against the hilum) close into holes."""
    pad = int(np.ceil(radius_px)) + 1
    padded = np.pad(mask, pad)
    dilated = ndi.distance_transform_edt(~padded) <= radius_px
    closed = ndi.distance_transform_edt(dilated) > radius_px
    return closed[pad:-pad, pad:-pad]


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, border_value=0)


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """The filled 2D convex hull of a mask's pixels (the pixel itself when too few to span an area).

    A pixel is inside when it lies within half a pixel of every facet's half-plane; each row's
    inside is one run of columns, whose ends the facets bound, so rows are filled, not tested pixel by pixel."""
    points = np.argwhere(mask)
    lo, hi = points.min(0), points.max(0) + 1
    try:
        hull = ConvexHull(points)
    except QhullError:
        return mask.copy()
    row_weight, col_weight, offset = hull.equations.T  # row_weight * row + col_weight * col + offset <= 0.5
    rows = np.arange(lo[0], hi[0])[:, None]
    room = 0.5 - offset - row_weight * rows  # col_weight * col <= room, per row and facet
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = room / col_weight
    first = np.where(col_weight < 0, bound, -np.inf).max(axis=1, initial=-np.inf)
    last = np.where(col_weight > 0, bound, np.inf).min(axis=1, initial=np.inf)
    feasible = np.where(col_weight == 0, room >= 0, True).all(axis=1)
    cols = np.arange(lo[1], hi[1])[None, :]
    out = np.zeros_like(mask)
    out[lo[0] : hi[0], lo[1] : hi[1]] = (cols >= first[:, None]) & (cols <= last[:, None]) & feasible[:, None]
    return out | mask
