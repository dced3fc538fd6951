"""A slab of the output volume being composed: painter's-algorithm blending with partial-volume edges.

Structures are painted back to front; each paint blends its HU into the slab by the fraction of every
voxel it covers and records the dominant tissue, so thin structures fade rather than alias on coarse
grids and the tissue map stays exact ground truth for tests and QC.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from ctscreen.imaging.synth.shapes import capsule, occupancy
from ctscreen.imaging.synth.tree import Segments

Box = tuple[slice, slice, slice]
BATCH_EDGE = 12  # tubes whose box is at most this many voxels along every axis are evaluated in batches


class Tissue(IntEnum):
    AIR = 0
    TABLE = 1
    SKIN = 2
    FAT = 3
    MUSCLE = 4
    BONE = 5  # cortical bone
    MARROW = 6  # cancellous bone
    CARTILAGE = 7  # costal cartilage and intervertebral discs
    SOFT = 8  # abdominal organs, oesophagus, spinal canal, airway walls
    HEART = 9
    VESSEL = 10
    LUNG = 11
    AIRWAY = 12  # air in the trachea and bronchi
    GAS = 13  # bowel gas
    ATELECTASIS = 14  # dependent atelectasis, a normal variant
    LESION = 15


class Canvas:
    """Patient-frame axes (mm, ascending) of one slab, its HU and its tissue labels."""

    def __init__(self, z: np.ndarray, y: np.ndarray, x: np.ndarray, width_mm: float):
        self.zs, self.ys, self.xs = (np.asarray(a, dtype=np.float32) for a in (z, y, x))
        self.z = self.zs[:, None, None]
        self.y = self.ys[None, :, None]
        self.x = self.xs[None, None, :]
        self.shape = (len(self.zs), len(self.ys), len(self.xs))
        self.width = float(width_mm)  # the edge ramp: one voxel, so edges anti-alias on every grid
        self.hu = np.full(self.shape, -1000.0, dtype=np.float32)
        self.tissue = np.zeros(self.shape, dtype=np.uint8)

    def occupancy(self, sdf: np.ndarray, edge_mm: float = 0.0) -> np.ndarray:
        """Voxel coverage of a shape whose border is ``edge_mm`` wide (never sharper than a voxel)."""
        return occupancy(sdf, max(self.width, edge_mm))

    def window(self, lo, hi) -> Box | None:
        """Index box of the voxels inside the mm box [lo, hi] (x, y, z corners); None when empty."""
        bounds = []
        for axis, a, b in ((self.zs, lo[2], hi[2]), (self.ys, lo[1], hi[1]), (self.xs, lo[0], hi[0])):
            i0, i1 = np.searchsorted(axis, a, "left"), np.searchsorted(axis, b, "right")
            if i0 >= i1:
                return None
            bounds.append(slice(int(i0), int(i1)))
        return tuple(bounds)

    def coords(self, box: Box | None = None):
        """Broadcastable (x, y, z) of the slab or of a box in it."""
        if box is None:
            return self.x, self.y, self.z
        return self.x[:, :, box[2]], self.y[:, box[1], :], self.z[box[0], :, :]

    def paint(self, value, occ: np.ndarray, tissue: Tissue, box: Box | None = None) -> None:
        """Blend ``value`` (HU, scalar or array) over what is there by the coverage ``occ``."""
        hu = self.hu if box is None else self.hu[box]
        hu += (value - hu) * occ
        labels = self.tissue if box is None else self.tissue[box]
        np.copyto(labels, np.uint8(tissue), where=occ > 0.5)

    def tubes(self, segments: Segments, radius_scale: float = 1.0, radius_add: float = 0.0,
              inside: np.ndarray | None = None) -> np.ndarray:
        """Coverage of a set of tubes, their radii scaled and widened (airway walls are wider tubes).

        A tube thinner than a voxel covers only part of it, so its coverage is scaled by its diameter
        over the voxel width: sub-voxel vessels fade as on a real scanner. ``inside`` (bool, slab
        shape) collects the voxels whose centres lie inside a tube. Tubes whose boxes span few voxels
        are evaluated together in one padded batch; the per-tube Python cost would dominate otherwise.
        """
        acc = np.zeros(self.shape, dtype=np.float32)
        r0 = segments.r_start * radius_scale + radius_add
        r1 = segments.r_end * radius_scale + radius_add
        lo, hi = Segments(segments.start, segments.end, r0, r1, segments.generation).box(margin=self.width)
        axes = (self.zs, self.ys, self.xs)
        first = np.stack([np.searchsorted(ax, lo[:, 2 - k], "left") for k, ax in enumerate(axes)], axis=1)
        stop = np.stack([np.searchsorted(ax, hi[:, 2 - k], "right") for k, ax in enumerate(axes)], axis=1)
        size = stop - first
        hit = np.all(size > 0, axis=1)
        small = hit & np.all(size <= BATCH_EDGE, axis=1)
        contrast = np.minimum(1.0, (r0 + r1) / self.width)
        for i in np.flatnonzero(hit & ~small):
            box = tuple(slice(int(a), int(b)) for a, b in zip(first[i], stop[i]))
            x, y, z = self.coords(box)
            sdf = capsule(x, y, z, segments.start[i], segments.end[i], r0[i], r1[i])
            np.maximum(acc[box], occupancy(sdf, self.width) * np.float32(contrast[i]), out=acc[box])
            if inside is not None:
                inside[box] |= sdf < 0
        if small.any():
            self._tube_batch(acc, segments, r0, r1, contrast, first, size, small, inside)
        return acc

    def _tube_batch(self, acc, segments, r0, r1, contrast, first, size, chosen, inside) -> None:
        """Evaluate many small tubes in one padded window each, then keep each voxel's maximum."""
        window = size[chosen].max(axis=0)
        limits = np.array(self.shape) - window
        start = np.minimum(first[chosen], limits)  # slide windows back inside the slab
        zi, yi, xi = (start[:, k, None] + np.arange(window[k]) for k in range(3))
        z = self.zs[zi][:, :, None, None]
        y = self.ys[yi][:, None, :, None]
        x = self.xs[xi][:, None, None, :]
        shaped = (-1, 1, 1, 1)
        sdf = capsule(x, y, z, segments.start[chosen].T.reshape(3, *shaped), segments.end[chosen].T.reshape(3, *shaped),
                      r0[chosen].reshape(shaped), r1[chosen].reshape(shaped))
        occ = occupancy(sdf, self.width) * contrast[chosen].astype(np.float32).reshape(shaped)
        ny, nx = self.shape[1], self.shape[2]
        flat = (zi[:, :, None, None] * ny + yi[:, None, :, None]) * nx + xi[:, None, None, :]
        np.maximum.at(acc.reshape(-1), flat.ravel(), occ.ravel())
        if inside is not None:
            inside.reshape(-1)[flat[sdf < 0]] = True
