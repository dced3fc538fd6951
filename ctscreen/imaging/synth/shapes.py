"""Signed-distance primitives in patient millimetres, so that anatomy is the same on any sampling grid.

Every function takes broadcastable coordinate arrays, either a block's axes shaped (nz,1,1), (1,ny,1)
and (1,1,nx) or flat point lists, and returns an approximate signed distance in mm (negative inside).
Approximate is enough: distances only set anti-aliased edge widths and margins of a few mm, and
keeping the x and y terms separable lets the expensive powers run on 2-D arrays instead of 3-D ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Radius = float | np.ndarray | tuple[float | np.ndarray, float | np.ndarray]


def occupancy(sdf: np.ndarray, width: float) -> np.ndarray:
    """Fraction of a voxel inside the shape: a linear ramp of ``width`` mm across the surface."""
    return np.clip(0.5 - sdf * np.float32(1.0 / width), 0.0, 1.0).astype(np.float32, copy=False)


def _pair(radius: Radius):
    return radius if isinstance(radius, tuple) else (radius, radius)


def superellipse(x, y, cx, cy, rx: Radius, ry: Radius, px: float = 2.0, py: float = 2.0) -> np.ndarray:
    """A cross-section (|dx/rx|^px + |dy/ry|^py <= 1) swept along z; parameters may vary with z.

    A radius given as a (negative side, positive side) pair makes the shape asymmetric, which is how
    a chest deeper in front than behind or a D-shaped lung are drawn without rotations.
    """
    rxn, rxp = (np.maximum(np.asarray(r, dtype=np.float32), np.float32(0.01)) for r in _pair(rx))
    ryn, ryp = (np.maximum(np.asarray(r, dtype=np.float32), np.float32(0.01)) for r in _pair(ry))
    dx = x - cx
    dy = y - cy
    tx = (np.abs(dx) / np.where(dx < 0, rxn, rxp)) ** px
    ty = (np.abs(dy) / np.where(dy < 0, ryn, ryp)) ** py
    scale = np.minimum(np.minimum(rxn, rxp), np.minimum(ryn, ryp)) / max(px, py)
    return (tx + ty - 1.0) * scale


def ellipsoid(x, y, z, center, radii, axes: np.ndarray | None = None) -> np.ndarray:
    """An ellipsoid; ``axes`` rows are its unit axes in patient space (identity when None)."""
    d = (x - np.float32(center[0]), y - np.float32(center[1]), z - np.float32(center[2]))
    axes = np.eye(3) if axes is None else np.asarray(axes)
    q2 = 0.0
    for row, r in zip(axes, radii):
        q = sum(np.float32(c / r) * di for c, di in zip(row, d) if c != 0.0)
        q2 = q2 + q * q
    return (np.sqrt(q2) - 1.0) * np.float32(min(radii))


def capsule(x, y, z, a, b, ra, rb) -> np.ndarray:
    """A tube from ``a`` to ``b`` whose radius tapers linearly from ``ra`` to ``rb``.

    ``a`` and ``b`` are (x, y, z) triples whose items, like the radii, may be arrays that broadcast
    with the coordinates: that evaluates many tubes at once.
    """
    a = np.asarray(a, dtype=np.float32)
    v = np.asarray(b, dtype=np.float32) - a
    inv_length2 = np.float32(1.0) / np.maximum(v[0] * v[0] + v[1] * v[1] + v[2] * v[2], np.float32(1e-9))
    dx, dy, dz = x - a[0], y - a[1], z - a[2]
    t = np.clip((dx * v[0] + dy * v[1] + dz * v[2]) * inv_length2, 0.0, 1.0)
    ex = dx - t * v[0]
    ey = dy - t * v[1]
    ez = dz - t * v[2]
    ra = np.float32(ra) if np.isscalar(ra) else np.asarray(ra, dtype=np.float32)
    rb = np.float32(rb) if np.isscalar(rb) else np.asarray(rb, dtype=np.float32)
    return np.sqrt(ex * ex + ey * ey + ez * ez) - (ra + t * (rb - ra))


@dataclass(frozen=True)
class Waves:
    """A smooth random field: a sum of plane waves with unit variance, defined in mm.

    Used for low-frequency tissue variation, irregular lesion borders and crazy-paving septa; being a
    function of position (not of voxel index) it looks the same on every grid.
    """

    k: np.ndarray  # (n, 3) wave vectors, rad/mm
    phase: np.ndarray  # (n,)

    @classmethod
    def random(cls, rng: np.random.Generator, n: int, wavelength_mm: tuple[float, float]) -> "Waves":
        directions = rng.normal(size=(n, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelength_mm, size=n)
        return cls(directions * (2 * np.pi / wavelengths)[:, None], rng.uniform(0, 2 * np.pi, size=n))

    def __call__(self, x, y, z) -> np.ndarray:
        # cos(a + b) = cos a cos b - sin a sin b keeps the trigonometry on the smaller x-only and (y, z) arrays.
        total = 0.0
        for (kx, ky, kz), phase in zip(self.k, self.phase):
            a = x * np.float32(kx)
            b = y * np.float32(ky) + z * np.float32(kz) + np.float32(phase)
            total = total + (np.cos(a) * np.cos(b) - np.sin(a) * np.sin(b))
        return total * np.float32(np.sqrt(2.0 / len(self.phase)))


def orthonormal_axes(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows: ``normal`` and two random unit vectors perpendicular to it and to each other."""
    n = normal / np.linalg.norm(normal)
    helper = rng.normal(size=3)
    u = helper - (helper @ n) * n
    u /= np.linalg.norm(u)
    return np.stack([n, u, np.cross(n, u)])
