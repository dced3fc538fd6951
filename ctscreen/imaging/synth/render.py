"""Render a case on a grid: compose anatomy and lesions slab by slab, then apply the scanner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctscreen.imaging.synth.canvas import Canvas, Tissue
from ctscreen.imaging.synth.effects import apply_scanner
from ctscreen.imaging.synth.lesions import Blob, Component
from ctscreen.imaging.synth.spec import NATIVE_MATRIX, STREAM_NOISE, CaseSpec, Grid, case_rng

SLAB_VOXELS = 2_000_000  # ~8 MB of float32 per slab: big enough to vectorise well, small enough that
# temporaries are reused by the allocator instead of being mapped afresh (page faults dominate otherwise)


@dataclass
class RenderedCase:
    hu: np.ndarray  # float32 (z, y, x), what the scanner reconstructs
    lung_mask: np.ndarray  # uint8, 1 inside either lung (vessels and lesions included, trachea excluded)
    lesion_mask: np.ndarray  # uint8, 1 in every abnormal lesion voxel, whatever the subtype
    tissue: np.ndarray  # uint8 ``Tissue`` label of the ideal image, before blur and noise
    spacing_zyx: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]


def _paint_lesions(canvas: Canvas, lesions: tuple[Component, ...], layer: str, lung_occ: np.ndarray, inside: np.ndarray) -> None:
    tissue = Tissue.AIRWAY if layer == "lumen" else Tissue.LESION
    for lesion in lesions:
        if lesion.layer != layer:
            continue
        if isinstance(lesion, Blob):
            box = canvas.window(*lesion.box())
            if box is None:
                continue
            x, y, z = canvas.coords(box)
            sdf = lesion.sdf(x, y, z)
            occ = np.minimum(canvas.occupancy(sdf, lesion.edge_mm), lung_occ[box])
            canvas.paint(lesion.value(x, y, z), occ, tissue, box)
            if lesion.in_mask:
                inside[box] |= sdf < 0
        else:
            occ = canvas.tubes(lesion.segments, inside=inside if lesion.in_mask else None)
            canvas.paint(np.float32(lesion.hu), np.minimum(occ, lung_occ), tissue)


def _compose(spec: CaseSpec, canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Paint one slab back to front; returns its lung and lesion masks."""
    chest = spec.chest
    if spec.scan.table:
        chest.paint_table(canvas)
    cavity = chest.paint_body(canvas)
    chest.paint_skeleton(canvas)
    chest.paint_mediastinum(canvas)
    lungs = chest.paint_lungs(canvas, cavity)
    in_lung = np.minimum(lungs[-1], lungs[1]) < 0
    lung_occ = canvas.occupancy(np.minimum(lungs[-1], lungs[1]))
    inside = np.zeros(canvas.shape, dtype=bool)
    _paint_lesions(canvas, spec.lesions, "ggo", lung_occ, inside)
    chest.paint_vessels(canvas, lung_occ)
    chest.paint_airway_walls(canvas, lung_occ)
    _paint_lesions(canvas, spec.lesions, "solid", lung_occ, inside)
    chest.paint_airway_lumen(canvas, lung_occ)
    for layer in ("lumen", "mass", "calcified"):
        _paint_lesions(canvas, spec.lesions, layer, lung_occ, inside)
    return in_lung, inside & in_lung


def render_case(spec: CaseSpec, grid: Grid) -> RenderedCase:
    """HU volume and masks of ``spec`` sampled on ``grid``; anatomy in mm is the same on every grid."""
    z, y, x = grid.axes()
    px, py, pz = spec.scan.position
    z, y, x = z - pz, y - py, x - px  # DICOM coordinates to the patient frame
    nz, ny, nx = grid.shape_zyx
    hu = np.empty(grid.shape_zyx, dtype=np.float32)
    tissue = np.empty(grid.shape_zyx, dtype=np.uint8)
    lung = np.empty(grid.shape_zyx, dtype=np.uint8)
    lesion = np.empty(grid.shape_zyx, dtype=np.uint8)
    slab = max(1, SLAB_VOXELS // (ny * nx))
    pixel = grid.spacing_zyx[1]
    for k in range(0, nz, slab):
        canvas = Canvas(z[k:k + slab], y, x, width_mm=pixel)
        in_lung, inside = _compose(spec, canvas)
        hu[k:k + slab] = canvas.hu
        tissue[k:k + slab] = canvas.tissue
        lung[k:k + slab] = in_lung
        lesion[k:k + slab] = inside
    native_pixel = spec.scan.fov_mm / NATIVE_MATRIX
    noise = spec.scan.noise_hu * min(1.0, native_pixel / pixel)  # coarser pixels average the native noise away
    apply_scanner(hu, grid.spacing_zyx, spec.scan.thickness_mm, spec.scan.kernel_params, noise,
                  case_rng(spec.seed, spec.index, STREAM_NOISE), slab)
    return RenderedCase(hu, lung, lesion, tissue, grid.spacing_zyx, grid.origin_xyz)
