"""Lesions of each subtype, as components the renderer paints in depth order.

COVID-19 is drawn the way the paper and the radiology literature describe it: bilateral, multifocal,
peripheral ground-glass opacities against the pleura, crazy paving and some consolidation. The
negatives are hard negatives that share some of those features: lobar pneumonia (consolidation with
air bronchograms and a ground-glass halo, usually in one lung), tumours (a solid, often spiculated
mass, sometimes with a halo) and old lesions (calcified nodules, fibrous stripes, a little ground
glass). Every component is clipped to the lungs when painted, and all but air bronchograms belong to
the lesion mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ctscreen.imaging.synth.anatomy import SIDES, Chest
from ctscreen.imaging.synth.shapes import Waves, ellipsoid, orthonormal_axes
from ctscreen.imaging.synth.tree import Segments, branching_tree

# Paint order relative to the anatomy: ground glass lies under the vessels (they stay visible through
# it), consolidation covers vessels and airway walls but not the air in the bronchi (air
# bronchograms), a mass covers everything, calcium is brightest of all.
LAYERS = ("ggo", "solid", "lumen", "mass", "calcified")


@dataclass(frozen=True)
class Blob:
    """An irregular ellipsoidal opacity, optionally cut by a fissure and textured inside."""

    layer: str
    center: np.ndarray
    radii: tuple[float, float, float]
    axes: np.ndarray  # rows: the ellipsoid's unit axes
    hu: float
    edge_mm: float  # width of the border ramp: wide for ground glass, sharp for a mass
    shape: Waves | None = None  # border irregularity
    irregularity: float = 0.0  # as a fraction of the smallest radius
    texture: Waves | None = None
    texture_hu: float = 0.0
    septa: Waves | None = None  # crazy paving: thickened septa where this field crosses zero
    septa_hu: float = 0.0
    cut: tuple[np.ndarray, np.ndarray] | None = None  # fissure (point, normal): the blob keeps the side behind the normal
    in_mask: bool = True

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        reach = max(self.radii) * (1.0 + self.irregularity) + self.edge_mm
        return self.center - reach, self.center + reach

    def sdf(self, x, y, z) -> np.ndarray:
        d = ellipsoid(x, y, z, self.center, self.radii, self.axes)
        if self.shape is not None:
            d = d + np.float32(self.irregularity * min(self.radii)) * self.shape(x, y, z)
        if self.cut is not None:
            point, normal = self.cut
            d = np.maximum(d, sum(np.float32(n) * (c - np.float32(p)) for n, c, p in zip(normal, (x, y, z), point)))
        return d

    def value(self, x, y, z):
        v = np.float32(self.hu)
        if self.texture is not None:
            v = v + np.float32(self.texture_hu) * self.texture(x, y, z)
        if self.septa is not None:
            lines = np.clip(1.0 - np.abs(self.septa(x, y, z)) / np.float32(0.35), 0.0, 1.0)
            v = v + np.float32(self.septa_hu) * lines
        return v


@dataclass(frozen=True)
class Tubes:
    """Thin linear lesions (spicules, fibrous stripes) or air bronchograms inside a consolidation."""

    layer: str
    segments: Segments
    hu: float
    in_mask: bool = True


Component = Blob | Tubes


def _site_in_lung(chest: Chest, rng: np.random.Generator, side: int, depth: tuple[float, float],
                  z: tuple[float, float] | None = None, posterior: float = 0.0, lower: float = 0.0) -> np.ndarray:
    """A point ``depth`` mm under one lung's surface, favouring posterior and lower regions if asked."""
    points = chest.sample_lung_points(rng, side, 200, depth=depth, z=z)
    if not len(points):  # a narrow band in a small lung: take any point of that lung instead
        points = chest.sample_lung_points(rng, side, 200, depth=(min(depth[0], 3.0), np.inf))
    weights = np.exp(posterior * points[:, 1] / 60.0 - lower * points[:, 2] / chest.H)
    return points[rng.choice(len(points), p=weights / weights.sum())]


def _points_in(blob: Blob, chest: Chest, side: int, n: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = blob.box()
    c = rng.uniform(lo, hi, size=(6 * n, 3))
    inside = (blob.sdf(c[:, 0], c[:, 1], c[:, 2]) < -2.0) & (chest.lung_points_sdf(side, c) < -2.0)
    return c[inside][:n]


def covid(chest: Chest, rng: np.random.Generator) -> list[Component]:
    stage = rng.uniform()  # early (pure ground glass) .. progressive (crazy paving, consolidation)
    n = int(rng.integers(2, 9))
    sides = [-1, 1] + [int(v) for v in rng.choice(SIDES, n - 2)]
    out: list[Component] = []
    for side in sides:
        point = _site_in_lung(chest, rng, side, (1.0, 5.0), posterior=1.0, lower=1.2)
        normal = chest.lung_normal(side, point)
        axes = orthonormal_axes(normal, rng)
        grow = 1.0 + 0.6 * stage
        # Flattened against the pleura: thin along the surface normal, wide along the surface.
        radii = (rng.uniform(5.0, 10.0) * (1.0 + 0.3 * stage), rng.uniform(12.0, 32.0) * grow, rng.uniform(12.0, 32.0) * grow)
        paving = rng.uniform() < 0.15 + 0.55 * stage
        out.append(Blob(
            "ggo", point, radii, axes, hu=rng.uniform(-700.0, -560.0) + 60.0 * stage, edge_mm=rng.uniform(4.0, 8.0),
            shape=Waves.random(rng, 4, (15.0, 40.0)), irregularity=0.3,
            texture=Waves.random(rng, 3, (6.0, 20.0)), texture_hu=35.0,
            septa=Waves.random(rng, 5, (9.0, 16.0)) if paving else None, septa_hu=rng.uniform(180.0, 280.0),
        ))
        if rng.uniform() < 0.15 + 0.55 * stage:
            core = point + normal * 0.3 * radii[0]
            out.append(Blob(
                "solid", core, tuple(r * rng.uniform(0.35, 0.6) for r in radii), axes, hu=rng.uniform(-100.0, 50.0),
                edge_mm=2.5, shape=Waves.random(rng, 3, (10.0, 30.0)), irregularity=0.25,
                texture=Waves.random(rng, 2, (8.0, 20.0)), texture_hu=15.0,
            ))
    return out



def _consolidation(chest: Chest, rng: np.random.Generator, side: int, size: tuple[float, float],
                   z: tuple[float, float], fissure: np.ndarray | None) -> Blob:
    centre = _site_in_lung(chest, rng, side, (10.0, 30.0), z=z, posterior=0.8)
    radii = tuple(rng.uniform(*size, 3))
    cut = None
    if fissure is not None:
        normal = fissure / np.linalg.norm(fissure)
        cut = (centre + normal * rng.uniform(0.3, 0.7) * max(radii), normal)
    return Blob(
        "solid", centre, radii, orthonormal_axes(rng.normal(size=3), rng), hu=rng.uniform(5.0, 45.0), edge_mm=2.5,
        shape=Waves.random(rng, 4, (25.0, 60.0)), irregularity=0.2,
        texture=Waves.random(rng, 3, (10.0, 30.0)), texture_hu=12.0, cut=cut,
    )


def other_pneumonia(chest: Chest, rng: np.random.Generator) -> list[Component]:
    H = chest.H
    side = int(rng.choice(SIDES))
    lobe = rng.choice(["lower", "upper", "middle"], p=[0.55, 0.3, 0.15] if side < 0 else [0.6, 0.4, 0.0])
    z, fissure = {
        "lower": ((0.05 * H, 0.45 * H), np.array([0.0, -0.6, 0.8])),  # behind and below the oblique fissure
        "upper": ((0.55 * H, 0.9 * H), np.array([0.0, 0.6, -0.8])),
        "middle": ((0.25 * H, 0.5 * H), np.array([0.0, 0.5, 0.5])),
    }[lobe]
    main = _consolidation(chest, rng, side, (28.0, 50.0), z, fissure)
    out: list[Component] = [main]
    if rng.uniform() < 0.6:
        halo = rng.uniform(8.0, 14.0)
        out.append(Blob(
            "ggo", main.center, tuple(r + halo for r in main.radii), main.axes, hu=rng.uniform(-620.0, -480.0),
            edge_mm=6.0, shape=main.shape, irregularity=0.25, texture=Waves.random(rng, 3, (8.0, 20.0)),
            texture_hu=30.0, cut=main.cut,
        ))
    points = _points_in(main, chest, side, 150, rng)
    if len(points) >= 8:
        towards_hilum = chest.hilum[side] - main.center
        root = main.center + towards_hilum / np.linalg.norm(towards_hilum) * 0.8 * min(main.radii)
        bronchi = branching_tree(root, points, rng.uniform(2.0, 3.0), 4, rng, reach=(0.5, 0.8))
        out.append(Tubes("lumen", bronchi, hu=-960.0, in_mask=False))
    if rng.uniform() < 0.15:  # a small patch in the other lung: unusual, but it happens
        out.append(_consolidation(chest, rng, -side, (10.0, 18.0), (0.05 * H, 0.6 * H), None))
    return out


def tumour(chest: Chest, rng: np.random.Generator) -> list[Component]:
    H = chest.H
    side = int(rng.choice(SIDES))
    z = (0.55 * H, 0.92 * H) if rng.uniform() < 0.6 else (0.15 * H, 0.55 * H)
    r = rng.uniform(8.0, 24.0)
    depth = (0.5 * r, 0.9 * r) if rng.uniform() < 0.25 else (r + 3.0, r + 30.0)  # juxtapleural or intraparenchymal
    centre = _site_in_lung(chest, rng, side, depth, z=z)
    radii = tuple(r * rng.uniform(0.85, 1.15, 3))
    out: list[Component] = [Blob(
        "mass", centre, radii, orthonormal_axes(rng.normal(size=3), rng), hu=rng.uniform(20.0, 55.0), edge_mm=1.0,
        shape=Waves.random(rng, 5, (0.8 * r, 2.0 * r)), irregularity=0.18,
        texture=Waves.random(rng, 3, (5.0, 12.0)), texture_hu=8.0,
    )]
    if rng.uniform() < 0.6:  # spiculated: thin strands radiating into the lung
        directions = rng.normal(size=(int(rng.integers(8, 20)), 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = rng.uniform(4.0, 16.0, len(directions))
        rows = [(centre + d * 0.8 * r, centre + d * (r + length), rng.uniform(0.9, 1.5), 0.3, 0)
                for d, length in zip(directions, lengths)]
        out.append(Tubes("mass", Segments.of(rows), hu=20.0))
    if rng.uniform() < 0.3:
        out.append(Blob("ggo", centre, tuple(v + rng.uniform(4.0, 9.0) for v in radii), np.eye(3),
                        hu=rng.uniform(-640.0, -540.0), edge_mm=4.0, shape=Waves.random(rng, 3, (10.0, 25.0)), irregularity=0.3))
    return out


def old_lesion(chest: Chest, rng: np.random.Generator) -> list[Component]:
    H = chest.H
    out: list[Component] = []
    for _ in range(int(rng.integers(1, 5))):  # calcified granulomas, mostly in the upper lobes
        side = int(rng.choice(SIDES))
        centre = _site_in_lung(chest, rng, side, (3.0, 40.0), z=(0.3 * H, 0.95 * H), lower=-1.0)
        r = rng.uniform(3.0, 6.0)
        out.append(Blob("calcified", centre, (r, r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.0)),
                        orthonormal_axes(rng.normal(size=3), rng), hu=rng.uniform(350.0, 1000.0), edge_mm=0.5))
    for _ in range(int(rng.integers(1, 4))):  # fibrous stripes: linear scars running out to the pleura
        side = int(rng.choice(SIDES))
        pleural = _site_in_lung(chest, rng, side, (1.0, 3.0), z=(0.45 * H, 0.95 * H), lower=-1.0)
        normal = chest.lung_normal(side, pleural)
        length = rng.uniform(20.0, 50.0)
        start = pleural - normal * length + rng.normal(0.0, 0.25 * length, 3)
        middle = (start + pleural) / 2 + rng.normal(0.0, 0.1 * length, 3)
        r = rng.uniform(1.0, 2.0)
        out.append(Tubes("solid", Segments.polyline([start, middle, pleural + 1.5 * normal], [0.8 * r, r, r]),
                         hu=rng.uniform(-60.0, 30.0)))
    if rng.uniform() < 0.3:
        side = int(rng.choice(SIDES))
        r = rng.uniform(5.0, 10.0)
        out.append(Blob("ggo", _site_in_lung(chest, rng, side, (r, 4 * r)), (r, r, r), np.eye(3),
                        hu=rng.uniform(-680.0, -580.0), edge_mm=3.0, shape=Waves.random(rng, 3, (8.0, 20.0)), irregularity=0.3))
    return out


def healthy(chest: Chest, rng: np.random.Generator) -> list[Component]:
    return []


MAKERS: dict[str, Callable[[Chest, np.random.Generator], list[Component]]] = {
    "covid": covid,
    "other-pneumonia": other_pneumonia,
    "tumour": tumour,
    "old-lesion": old_lesion,
    "healthy": healthy,
}
