"""Branching tubes (vessels, airways, air bronchograms) grown to fill a region given as sample points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MURRAY_EXPONENT = 3.0  # parent r^3 = sum of children r^3, the classic vascular branching law
TAPER = 0.9  # radius at the end of a segment relative to its start (children start from the parent's start radius)


@dataclass(frozen=True)
class Segments:
    """Tapered tubes as parallel arrays, so a block finds the ones it meets with one comparison."""

    start: np.ndarray  # (n, 3) x, y, z in mm
    end: np.ndarray
    r_start: np.ndarray  # (n,)
    r_end: np.ndarray
    generation: np.ndarray  # (n,) 0 at the root

    @classmethod
    def of(cls, rows: list[tuple[np.ndarray, np.ndarray, float, float, int]]) -> "Segments":
        start, end, r0, r1, gen = zip(*rows)
        return cls(np.array(start, float), np.array(end, float), np.array(r0, float), np.array(r1, float), np.array(gen, int))

    @classmethod
    def polyline(cls, points: list, radii: list[float]) -> "Segments":
        """Consecutive points joined by tubes; ``radii`` gives the radius at each point."""
        return cls.of([(np.asarray(points[i], float), np.asarray(points[i + 1], float), radii[i], radii[i + 1], 0) for i in range(len(points) - 1)])

    def __len__(self) -> int:
        return len(self.r_start)

    def __add__(self, other: "Segments") -> "Segments":
        return Segments(
            np.concatenate([self.start, other.start]),
            np.concatenate([self.end, other.end]),
            np.concatenate([self.r_start, other.r_start]),
            np.concatenate([self.r_end, other.r_end]),
            np.concatenate([self.generation, other.generation]),
        )

    def where(self, keep: np.ndarray) -> "Segments":
        return Segments(self.start[keep], self.end[keep], self.r_start[keep], self.r_end[keep], self.generation[keep])

    def box(self, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Per-segment (lo, hi) corners of the axis-aligned box holding the tube plus ``margin`` mm."""
        r = np.maximum(self.r_start, self.r_end)[:, None] + margin
        return np.minimum(self.start, self.end) - r, np.maximum(self.start, self.end) + r


def branching_tree(
    root: np.ndarray,
    points: np.ndarray,
    radius: float,
    depth: int,
    rng: np.random.Generator,
    reach: tuple[float, float] = (0.4, 0.7),
) -> Segments:
    """Grow a binary tree from ``root`` that fills the region sampled by ``points`` (N x 3 mm).

    Each branch heads for the centroid of the points it supplies and splits them in two halves along
    their longest extent, so branches spread through the whole region without leaving it for long;
    the last generation runs on toward the far edge of its territory so twigs reach the periphery.
    Equal halves give every child the same Murray's-law radius and let a whole generation grow at
    once, as arrays.
    """
    depth = max(1, min(depth, int(np.log2(max(len(points), 1))) + 1))
    groups = 2 ** (depth - 1)
    pts = np.asarray(points, float)[: len(points) - len(points) % groups][None]  # (branches, points each, 3)
    starts = np.asarray(root, float)[None]
    r = np.array([float(radius)])
    parts = []
    for generation in range(depth):
        n = len(starts)
        target = pts.mean(axis=1)
        if generation == depth - 1:
            far = pts[np.arange(n), np.argmax(((pts - starts[:, None]) ** 2).sum(axis=2), axis=1)]
            ends = target + 0.6 * (far - target)
        else:
            ends = starts + rng.uniform(*reach, (n, 1)) * (target - starts)
        ends = ends + rng.normal(size=(n, 3)) * (0.06 * np.linalg.norm(ends - starts, axis=1) + 1e-6)[:, None]
        parts.append(Segments(starts, ends, r, r * TAPER, np.full(n, generation)))
        if generation == depth - 1:
            break
        axis = np.argmax(np.ptp(pts, axis=1), axis=1)
        keys = np.take_along_axis(pts, axis[:, None, None], axis=2)[:, :, 0]
        order = np.argsort(keys, axis=1, kind="stable")
        pts = np.take_along_axis(pts, order[:, :, None], axis=1).reshape(2 * n, pts.shape[1] // 2, 3)
        starts = np.repeat(ends, 2, axis=0)
        r = np.repeat(r * 0.5 ** (1.0 / MURRAY_EXPONENT), 2)
    tree = parts[0]
    for part in parts[1:]:
        tree = tree + part
    return tree
