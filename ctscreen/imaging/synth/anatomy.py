"""The chest of one synthetic patient, in patient millimetres, and how to paint it onto a slab.

Patient frame: x to the patient's left, y posterior, z superior (DICOM LPS axes); x = 0 on the
midline, y = 0 at the centre of the thoracic cavity, z = 0 near the lung bases (the costophrenic
recesses reach a little lower) and z = H at the apices. Most structures are generalised cylinders whose cross-section parameters
vary smoothly with z, plus a per-patient random low-frequency wobble of those profiles, which keeps
every shape smooth, different per patient and cheap to evaluate on any grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctscreen.imaging.synth.canvas import Canvas, Tissue
from ctscreen.imaging.synth.shapes import Waves, capsule, ellipsoid, orthonormal_axes, superellipse
from ctscreen.imaging.synth.tree import Segments, branching_tree

SIDES = (-1, 1)  # right lung at negative x, left lung at positive x
N_RIBS = 12
PLEURAL_GAP_MM = 2.0  # lung surface to chest wall and mediastinum: pleura and extrapleural fat
VESSEL_GENERATIONS = 9  # down to ~1 mm radius: what a chest CT resolves


@dataclass(frozen=True)
class Patient:
    sex: str  # "F" or "M"
    age: int
    scale: float  # body size relative to an average adult
    width: float  # lateral habitus
    depth: float  # antero-posterior habitus
    fat_mm: float  # subcutaneous fat thickness


@dataclass(frozen=True)
class Wobble:
    """A smooth zero-mean random function of z: the per-patient deformation of a profile."""

    amplitude: np.ndarray
    wavelength: np.ndarray
    phase: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, n: int = 2) -> "Wobble":
        return cls(rng.uniform(-amplitude, amplitude, n), rng.uniform(120.0, 400.0, n), rng.uniform(0, 2 * np.pi, n))

    def __call__(self, z):
        return sum(np.float32(a) * np.sin(z * np.float32(2 * np.pi / w) + np.float32(p))
                   for a, w, p in zip(self.amplitude, self.wavelength, self.phase))


def _interp(z, knots: list[float], values: list[float]):
    return np.interp(z, knots, values).astype(np.float32)


class Chest:
    """Geometry, tissue values and vessel/airway trees of one patient; deterministic for an rng."""

    def __init__(self, patient: Patient, rng: np.random.Generator, atelectasis: bool):
        self.patient = patient
        s, sw, sd = patient.scale, patient.scale * patient.width, patient.scale * patient.depth
        self.s = s
        self.H = H = 262.0 * s * rng.normal(1.0, 0.03)
        self.cavity = (132.0 * sw, 80.0 * sd, 72.0 * sd)  # half-width, front and back half-depths
        self.muscle = (11.0 * s, 14.0 * s, 40.0 * s)  # lateral, anterior (pectoral), posterior (paraspinal)
        self.fat = (1.2 * patient.fat_mm, patient.fat_mm, 0.6 * patient.fat_mm)  # thinner where the back lies on the table
        self._wobble_size = Wobble.random(rng, 0.03)
        self._wobble_x = Wobble.random(rng, 3.0)
        self._wobble_y = Wobble.random(rng, 3.0)

        # Tissue values (HU) of this patient; bone loses density with age.
        self.fat_hu = rng.normal(-100.0, 6.0)
        self.muscle_hu = rng.normal(45.0, 4.0)
        self.blood_hu = rng.normal(40.0, 3.0)
        self.liver_hu = rng.normal(58.0, 5.0)
        self.cancellous_hu = float(np.clip(rng.normal(300.0 - 2.2 * (patient.age - 30), 20.0), 110.0, 330.0))
        self.cortical_hu = rng.normal(950.0, 80.0)
        self.lung_hu = rng.normal(-885.0, 10.0)
        self.gravity_hu = rng.uniform(30.0, 70.0)  # denser dependent (posterior) lung in a supine patient
        self.lung_texture = Waves.random(rng, 3, (40.0, 120.0))

        self.domes = {  # top height, centre (x, y), radii (x, y): the diaphragm under each lung
            -1: (0.24 * H * rng.normal(1.0, 0.08), (-60.0 * sw, -12.0 * sd), (88.0 * sw, 100.0 * sd)),
            1: (0.2 * H * rng.normal(1.0, 0.08), (60.0 * sw, -6.0 * sd), (85.0 * sw, 98.0 * sd)),
        }
        self.apex = {-1: H, 1: H - rng.uniform(0.0, 8.0)}
        self.vertebra = (25.0 * s, rng.uniform(0.0, 25.0 * s))  # period along z and phase
        self.rib_pitch = (H + 45.0 * s) / (N_RIBS - 0.5)
        self.rib_top = H - 4.0 * s
        self.rib_descent = rng.normal(75.0, 8.0) * s  # anterior end lower than the posterior one
        self.atelectasis = (rng.uniform(3.0, 8.0), rng.uniform(-480.0, -250.0)) if atelectasis else None
        self.gas = rng.uniform() < 0.6

        # The heart's long axis points left, forward and down; its base sits on the diaphragm.
        long_axis = np.array([np.cos(0.7), -np.sin(0.7), -0.35])
        long_axis /= np.linalg.norm(long_axis)
        self.heart = ((24.0 * sw, -self.cavity[1] + 58.0 * sd, 0.17 * H), (64.0 * s, 46.0 * sd, 52.0 * s),
                      orthonormal_axes(long_axis, rng))
        self._build_mediastinum()
        self._build_trees(rng)

    # ---- everything that depends on height alone ----------------------------------------------------

    def level(self, z) -> "Level":
        """The chest's cross-section parameters at heights ``z`` (any shape), computed once per use."""
        H, s = self.H, self.s
        z = np.asarray(z, dtype=np.float32)
        cx, cy = self._wobble_x(z), self._wobble_y(z)
        barrel = 1.0 - 0.05 * ((z - 0.3 * H) / (0.55 * H)) ** 2
        inlet = np.clip((z - 0.62 * H) / (0.5 * H), 0.0, 1.0) ** 2  # narrowing toward the thoracic inlet
        size = 1.0 + self._wobble_size(z)
        w, f, b = self.cavity
        cavity = (w * barrel * (1.0 - 0.5 * inlet) * size, f * (1.0 - 0.3 * inlet) * size, b * (1.0 - 0.2 * inlet) * size)
        shoulders = np.clip((z - 0.72 * H) / (0.35 * H), 0.0, 1.0)
        pectoral = np.clip((z - 0.45 * H) / (0.4 * H), 0.0, 1.0)
        muscle = (cavity[0] + self.muscle[0] + 45.0 * s * shoulders, cavity[1] + self.muscle[1] + 10.0 * s * pectoral,
                  cavity[2] + self.muscle[2])
        outer = tuple(m + f for m, f in zip(muscle, self.fat))
        mediastinum = _interp(z, [0.1 * H, 0.45 * H, 0.62 * H, 0.8 * H], [24.0 * s, 34.0 * s, 28.0 * s, 22.0 * s])
        return Level(z, cx, cy, cavity, muscle, outer, cy + cavity[2] - 14.0 * s, mediastinum)

    def scan_range(self) -> tuple[float, float]:
        """The z extent of a chest CT: from the upper abdomen to just above the lung apices."""
        return -40.0 - 10.0 * self.s, self.H + 25.0

    def body_half_width(self) -> float:
        """Largest half-width of the body over the scan range: the field of view must hold it."""
        return float(np.max(self.level(np.linspace(*self.scan_range(), 64)).outer[0])) + 2.0

    # ---- signed distances ------------------------------------------------------------------------

    @staticmethod
    def _layer_sdf(x, y, lv: "Level", radii, grow: float = 0.0):
        w, f, b = radii
        return superellipse(x, y, lv.cx, lv.cy, w + grow, (f + grow, b + grow), 2.2, 2.6)

    def dome_z(self, side: int, x, y):
        top, (xc, yc), (rx, ry) = self.domes[side]
        return np.float32(top) * (1.0 - ((x - np.float32(xc)) / np.float32(rx)) ** 2 - ((y - np.float32(yc)) / np.float32(ry)) ** 2)

    def diaphragm_z(self, x, y):
        """The diaphragm surface under both lungs, the right dome for x < 0 and the left beyond."""
        return np.where(x < 0, self.dome_z(-1, x, y), self.dome_z(1, x, y))

    def _mediastinum_sdf(self, x, y, lv: "Level"):
        front = lv.cy - lv.cavity[1]
        return superellipse(x, y, lv.cx + np.float32(3.0 * self.s), (front + lv.spine_y) / 2, lv.mediastinum,
                            (lv.spine_y - front) / 2 + 2.0, 2.0, 2.0)

    def _heart_sdf(self, x, y, z):
        centre, radii, axes = self.heart
        return np.maximum(ellipsoid(x, y, z, centre, radii, axes), self.diaphragm_z(x, y) - z)

    def _vertebral_body_sdf(self, x, y, lv: "Level", shrink: float = 0.0):
        s = self.s
        grow = 1.12 - 0.12 * lv.z / np.float32(self.H)  # vertebrae widen caudally
        return superellipse(x, y, lv.cx, lv.spine_y, 18.0 * s * grow - shrink, 15.0 * s * grow - shrink, 2.2, 2.2)

    def _exclusion_sdf(self, x, y, lv: "Level", canvas: Canvas | None):
        """Where no lung may be: mediastinum, heart, vertebral bodies, great vessels and oesophagus."""
        z = lv.z
        d = np.minimum(np.minimum(self._mediastinum_sdf(x, y, lv), self._heart_sdf(x, y, z)),
                       self._vertebral_body_sdf(x, y, lv) - 3.0)
        d = np.broadcast_to(d, np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))).copy()
        segments = self.great_vessels + self.oesophagus
        if canvas is None:
            for i in range(len(segments)):
                d = np.minimum(d, capsule(x, y, z, segments.start[i], segments.end[i], segments.r_start[i], segments.r_end[i]))
            return d
        lo, hi = segments.box(margin=canvas.width)
        for i in range(len(segments)):
            box = canvas.window(lo[i], hi[i])
            if box is not None:
                bx, by, bz = canvas.coords(box)
                np.minimum(d[box], capsule(bx, by, bz, segments.start[i], segments.end[i], segments.r_start[i], segments.r_end[i]), out=d[box])
        return d

    def _lung_sdf(self, side: int, x, y, lv: "Level", cavity, exclusion):
        H, s, z = self.H, self.s, lv.z
        cw, cf, cb = lv.cavity
        z_round = 0.6 * H  # above this each lung narrows into its own rounded apex
        top = np.float32(self.apex[side])
        apex = np.sqrt(np.clip(1.0 - ((z - z_round) / (top - z_round)) ** 2, 0.0, 1.0))
        apex = np.where(z < z_round, np.float32(1.0), apex) * (z <= top)
        half = np.float32(0.5) * cw
        lateral, medial = (half + 30.0) * apex, (half + 10.0) * apex
        shape = superellipse(x, y, lv.cx + side * half, lv.cy + 10.0 * s * (1.0 - apex),
                             (lateral, medial) if side < 0 else (medial, lateral),
                             ((cf + 20.0) * apex, (cb + 20.0) * apex), 2.0, 2.0)
        d = np.maximum(shape, cavity + PLEURAL_GAP_MM)
        d = np.maximum(d, PLEURAL_GAP_MM - exclusion)
        d = np.maximum(d, self.dome_z(side, x, y) - z)
        return np.maximum(d, PLEURAL_GAP_MM - side * (x - lv.cx - np.float32(3.0 * s)))

    def lung_sdfs(self, x, y, lv: "Level", canvas: Canvas | None = None, cavity: np.ndarray | None = None,
                  sides: tuple[int, ...] = SIDES) -> dict[int, np.ndarray]:
        """Signed distance to each lung (keyed by side); ``canvas`` limits the vessel terms to their boxes."""
        if cavity is None:
            cavity = self._layer_sdf(x, y, lv, lv.cavity)
        exclusion = self._exclusion_sdf(x, y, lv, canvas)
        return {side: self._lung_sdf(side, x, y, lv, cavity, exclusion) for side in sides}

    def lung_points_sdf(self, side: int, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float32)
        return self.lung_sdfs(p[:, 0], p[:, 1], self.level(p[:, 2]), sides=(side,))[side]

    def sample_lung_points(self, rng: np.random.Generator, side: int, n: int,
                           depth: tuple[float, float] = (3.0, np.inf), z: tuple[float, float] | None = None) -> np.ndarray:
        """Up to ``n`` uniform points of one lung lying ``depth`` (min, max) under its surface.

        Depths are the approximate signed distance: exact near the surface, shallower deep inside.
        """
        w, f, b = self.cavity
        z_lo, z_hi = z if z is not None else (-10.0, self.H)
        found = []
        for _ in range(8):
            c = rng.uniform((0.0, -f - 10.0, z_lo), (w + 10.0, b + 10.0, z_hi), size=(3 * n, 3))
            c[:, 0] *= side
            d = -self.lung_points_sdf(side, c)
            found.append(c[(d >= depth[0]) & (d <= depth[1])])
            if sum(len(p) for p in found) >= n:
                break
        return np.concatenate(found)[:n]

    def lung_normal(self, side: int, point: np.ndarray) -> np.ndarray:
        """Outward unit normal of the lung surface nearest ``point`` (gradient of its distance)."""
        h = 1.5
        probes = point[None, :] + np.concatenate([np.eye(3), -np.eye(3)]) * h
        d = self.lung_points_sdf(side, probes).astype(float)
        g = d[:3] - d[3:]
        return g / max(np.linalg.norm(g), 1e-9)

    # ---- mediastinal tubes, vessel and airway trees ----------------------------------------------------------------

    def _build_mediastinum(self) -> None:
        H, s = self.H, self.s
        (hx, hy, _), _, _ = self.heart
        yv = float(self.level(0.5 * H).spine_y)
        age = 1.0 + 0.005 * (self.patient.age - 50)  # the aorta widens with age
        aorta = [(2 * s, hy - 8 * s, 0.28 * H), (-14 * s, hy - 20 * s, 0.5 * H), (-12 * s, hy - 18 * s, 0.64 * H),
                 (4 * s, (hy + yv) / 2 - 12 * s, 0.73 * H), (19 * s, yv - 30 * s, 0.7 * H), (22 * s, yv - 19 * s, 0.6 * H),
                 (20 * s, yv - 17 * s, 0.3 * H), (8 * s, yv - 17 * s, -60.0)]
        aorta_r = [r * s * age for r in (14.0, 16.0, 15.0, 13.0, 12.0, 11.5, 11.0, 10.0)]
        svc = Segments.polyline([(-27 * s, hy - 14 * s, H + 40), (-25 * s, hy - 10 * s, 0.42 * H)], [10 * s, 10 * s])
        trunk_top = (6 * s, hy - 4 * s, 0.56 * H)
        pulmonary = Segments.polyline([(hx, hy - 28 * s, 0.3 * H), (14 * s, hy - 22 * s, 0.48 * H), trunk_top], [13 * s, 13 * s, 12 * s])
        mediastinum_half = {side: float(self.level(z).mediastinum) for side, z in ((-1, 0.5 * H), (1, 0.53 * H))}
        hilum_y = (hy + yv) / 2 + 10 * s
        self.hilum = {side: np.array([side * (mediastinum_half[side] + 6 * s) + 3 * s, hilum_y, (0.5 if side < 0 else 0.53) * H])
                      for side in SIDES}
        self.vein_hilum = {side: self.hilum[side] + (0.0, 12 * s, -0.12 * H) for side in SIDES}
        atrium = np.array([8 * s, hy + 36 * s, 0.3 * H])
        branches = []
        for side in SIDES:
            branches.append(Segments.polyline([trunk_top, self.hilum[side]], [11 * s, 9 * s]))
            branches.append(Segments.polyline([atrium + (side * 18 * s, 0, 0), self.vein_hilum[side]], [8 * s, 7 * s]))
        self.great_vessels = Segments.polyline(aorta, aorta_r) + svc + pulmonary
        for b in branches:
            self.great_vessels = self.great_vessels + b
        self.oesophagus = Segments.polyline([(5 * s, yv - 25 * s, H + 40), (6 * s, yv - 24 * s, 0.3 * H), (22 * s, yv - 36 * s, -60.0)],
                                            [7 * s, 7 * s, 8 * s])
        self.carina = np.array([0.0, yv - 42 * s, 0.62 * H])
        self.trachea = Segments.polyline([(0.0, yv - 44 * s, H + 60), self.carina], [9 * s, 9 * s])
        self.bronchus_end = {side: self.hilum[side] + (-side * 4 * s, -6 * s, 0.03 * H) for side in SIDES}
        self.main_bronchi = (Segments.polyline([self.carina, self.bronchus_end[-1]], [7.5 * s, 6.5 * s])
                             + Segments.polyline([self.carina, self.bronchus_end[1]], [6.5 * s, 5.5 * s]))

    def _build_trees(self, rng: np.random.Generator) -> None:
        s = self.s
        vessels = []
        airways = []
        for side in SIDES:
            for hilum, radius in ((self.hilum[side], 6.5 * s), (self.vein_hilum[side], 6.0 * s)):
                points = self.sample_lung_points(rng, side, 3072, depth=(3.0, np.inf))
                vessels.append(branching_tree(hilum, points, radius, VESSEL_GENERATIONS, rng))
            points = self.sample_lung_points(rng, side, 256, depth=(10.0, np.inf))
            airways.append(branching_tree(self.bronchus_end[side], points, 5.0 * s, 5, rng, reach=(0.45, 0.6)))
        self.vessel_tree = vessels[0] + vessels[1] + vessels[2] + vessels[3]
        self.airway_tree = airways[0] + airways[1]

    # ---- painting --------------------------------------------------------------------------------

    def paint_table(self, canvas: Canvas) -> None:
        """The patient table under the back: a foam pad on a hollow, gently curved carbon-fibre top."""
        lv = self.level(0.4 * self.H)
        top = float(lv.cy + lv.outer[2]) + 1.0
        rows = canvas.window((-250.0, top - 40.0, canvas.zs[0]), (250.0, top + 65.0, canvas.zs[-1]))
        if rows is None:
            return
        box = (slice(None), rows[1], slice(None))
        x, y = canvas.x[0], canvas.y[0, rows[1]]  # (1, nx), (ny', 1)
        curve = top - 0.0008 * x * x  # the edges curl up around the patient
        across = np.abs(x) < 215.0
        for lo, hi, hu in ((0.0, 25.0, -850.0), (25.0, 28.0, 150.0), (28.0, 48.0, -950.0), (48.0, 51.0, 150.0)):
            occ = canvas.occupancy(np.maximum(curve + lo - y, y - curve - hi)) * across
            canvas.paint(np.float32(hu), occ[None], Tissue.TABLE, box)

    def paint_body(self, canvas: Canvas) -> np.ndarray:
        """Skin, fat, muscle, the cavity's fat and the abdomen under the diaphragm; returns the cavity sdf."""
        x, y, z = canvas.coords()
        lv = self.level(z)
        canvas.paint(np.float32(30.0), canvas.occupancy(self._layer_sdf(x, y, lv, lv.outer)), Tissue.SKIN)
        canvas.paint(np.float32(self.fat_hu), canvas.occupancy(self._layer_sdf(x, y, lv, lv.outer, grow=-2.0)), Tissue.FAT)
        canvas.paint(np.float32(self.muscle_hu), canvas.occupancy(self._layer_sdf(x, y, lv, lv.muscle)), Tissue.MUSCLE)
        cavity_sdf = self._layer_sdf(x, y, lv, lv.cavity)
        canvas.paint(np.float32(self.fat_hu + 10.0), canvas.occupancy(cavity_sdf), Tissue.FAT)
        below = z - self.diaphragm_z(x, y)
        canvas.paint(np.float32(self.muscle_hu - 5.0), canvas.occupancy(np.maximum(cavity_sdf, below)), Tissue.MUSCLE)
        liver = x < 10.0 * self.s
        organs = np.where(liver, np.float32(self.liver_hu), np.where(y > 20.0 * self.s, np.float32(45.0), np.float32(35.0)))
        organ_occ = canvas.occupancy(np.maximum(cavity_sdf + 3.0, below + 5.0))
        canvas.paint(organs, organ_occ, Tissue.SOFT)
        if self.gas:
            s, top = self.s, self.domes[1][0]
            gas = ellipsoid(x, y, z, (55 * s, -25 * s, top - 35 * s), (30 * s, 22 * s, 16 * s))
            canvas.paint(np.float32(-990.0), np.minimum(canvas.occupancy(gas), organ_occ), Tissue.GAS)
        return cavity_sdf

    def paint_skeleton(self, canvas: Canvas) -> None:
        self._paint_spine(canvas)
        self._paint_ribs(canvas)
        self._paint_sternum(canvas)

    def _paint_spine(self, canvas: Canvas) -> None:
        s = self.s
        spine_y = self.level(canvas.zs).spine_y
        box = canvas.window((-60 * s, float(spine_y.min()) - 25 * s, canvas.zs[0]),
                            (60 * s, float(spine_y.max()) + 75 * s, canvas.zs[-1]))
        if box is None:
            return
        x, y, z = canvas.coords(box)
        lv = self.level(z)
        body = self._vertebral_body_sdf(x, y, lv)
        period, offset = self.vertebra
        phase = ((z - np.float32(offset)) / np.float32(period)) % 1.0
        canvas.paint(np.float32(self.cortical_hu * 0.75), canvas.occupancy(body), Tissue.BONE, box)
        canvas.paint(np.float32(self.cancellous_hu), canvas.occupancy(self._vertebral_body_sdf(x, y, lv, shrink=2.0)), Tissue.MARROW, box)
        canvas.paint(np.float32(90.0), canvas.occupancy(body) * (phase < 0.17), Tissue.CARTILAGE, box)  # discs
        grow = 1.12 - 0.12 * z / np.float32(self.H)
        canal_y = lv.spine_y + 15.0 * s * grow + 9.0 * s
        arch = superellipse(x, y, lv.cx, canal_y, 14.0 * s, 13.0 * s)
        processes = np.minimum(superellipse(x, y, lv.cx, canal_y + 24.0 * s, 4.5 * s, 17.0 * s),
                               superellipse(x, y, lv.cx, canal_y - 3.0 * s, 38.0 * s, 6.0 * s))
        posterior = np.minimum(arch, np.where((phase > 0.2) & (phase < 0.85), processes, np.float32(1e3)))
        canvas.paint(np.float32(0.5 * (self.cortical_hu + self.cancellous_hu)), canvas.occupancy(posterior), Tissue.BONE, box)
        canvas.paint(np.float32(25.0), canvas.occupancy(superellipse(x, y, lv.cx, canal_y, 8.0 * s, 8.0 * s)), Tissue.SOFT, box)

    def _paint_ribs(self, canvas: Canvas) -> None:
        """Twelve rib pairs around the cavity, sloping down laterally and toward the front, cartilage at their ends.

        The rib a voxel could belong to follows from its height after undoing the slope, so all ribs
        are drawn in one vectorised pass whatever their number.
        """
        s = self.s
        x, y, z = canvas.coords()
        lv = self.level(z)
        cw, cf, cb = lv.cavity
        ring = superellipse(x, y, lv.cx, lv.cy, cw + 6.0 * s, (cf + 6.0 * s, cb + 6.0 * s), 2.2, 2.6)
        t = np.clip((lv.cy + cb - y) / (cf + cb), 0.0, 1.0)  # 0 at the back, 1 at the front
        lateral = np.clip(np.abs(x - lv.cx) / cw, 0.0, 1.0)
        lifted = z + np.float32(self.rib_descent) * (0.35 * lateral + 0.65 * t)
        k = np.clip(np.rint((self.rib_top - lifted) / np.float32(self.rib_pitch)), 0, N_RIBS - 1)
        local = lifted - (np.float32(self.rib_top) - k * np.float32(self.rib_pitch))
        bone_end = np.where(k < 7, np.float32(0.8), np.where(k < 10, np.float32(0.72), np.float32(0.45)))
        cartilage_end = np.where(k < 7, np.float32(0.97), np.where(k < 10, np.float32(0.9), np.float32(0.45)))
        outer = np.sqrt((ring / (4.0 * s)) ** 2 + (local / (6.5 * s)) ** 2) * (4.0 * s) - 4.0 * s
        inner = np.sqrt((ring / (2.5 * s)) ** 2 + (local / (5.0 * s)) ** 2) * (2.5 * s) - 2.5 * s
        bony = (np.abs(x - lv.cx) > 22.0 * s) & (t < bone_end)
        cartilage = (np.abs(x - lv.cx) > 10.0 * s) & (t >= bone_end) & (t < cartilage_end)
        canvas.paint(np.float32(self.cortical_hu), canvas.occupancy(outer) * bony, Tissue.BONE)
        canvas.paint(np.float32(self.cancellous_hu), canvas.occupancy(inner) * bony, Tissue.MARROW)
        canvas.paint(np.float32(120.0), canvas.occupancy(outer) * cartilage, Tissue.CARTILAGE)

    def _paint_sternum(self, canvas: Canvas) -> None:
        H, s = self.H, self.s
        box = canvas.window((-40 * s, -self.cavity[1] - 40 * s, max(canvas.zs[0], 0.28 * H)),
                            (40 * s, -self.cavity[1] + 20 * s, min(canvas.zs[-1], 0.88 * H)))
        if box is None:
            return
        x, y, z = canvas.coords(box)
        lv = self.level(z)
        half_width = _interp(z, [0.28 * H, 0.3 * H, 0.7 * H, 0.74 * H, 0.86 * H, 0.88 * H], [0.0, 13 * s, 15 * s, 24 * s, 22 * s, 0.0])
        front = lv.cy - lv.cavity[1] - 6.0 * s
        canvas.paint(np.float32(self.cortical_hu * 0.8), canvas.occupancy(superellipse(x, y, lv.cx, front, half_width, 6.0 * s)), Tissue.BONE, box)
        canvas.paint(np.float32(self.cancellous_hu), canvas.occupancy(superellipse(x, y, lv.cx, front, half_width - 2.0, 4.0 * s)), Tissue.MARROW, box)

    def paint_mediastinum(self, canvas: Canvas) -> None:
        """Oesophagus, heart and great vessels on the mediastinal fat."""
        canvas.paint(np.float32(35.0), canvas.tubes(self.oesophagus), Tissue.SOFT)
        centre, radii, _ = self.heart
        reach = max(radii)
        box = canvas.window(np.subtract(centre, reach), np.add(centre, reach))
        if box is not None:
            x, y, z = canvas.coords(box)
            canvas.paint(np.float32(self.blood_hu), canvas.occupancy(self._heart_sdf(x, y, z)), Tissue.HEART, box)
        roots = self.vessel_tree.where(self.vessel_tree.generation == 0)
        canvas.paint(np.float32(self.blood_hu), canvas.tubes(self.great_vessels + roots), Tissue.VESSEL)

    def paint_lungs(self, canvas: Canvas, cavity: np.ndarray) -> dict[int, np.ndarray]:
        """Parenchyma with its gravity gradient and faint texture; returns each lung's sdf on the slab."""
        x, y, z = canvas.coords()
        lv = self.level(z)
        lungs = self.lung_sdfs(x, y, lv, canvas, cavity)
        occ = canvas.occupancy(np.minimum(lungs[-1], lungs[1]))
        _, front, back = lv.cavity
        dependent = np.clip((y - lv.cy + front) / (front + back), 0.0, 1.0) ** 1.5
        value = np.float32(self.lung_hu) + np.float32(self.gravity_hu) * dependent + 10.0 * self.lung_texture(x, y, z)
        canvas.paint(value, occ, Tissue.LUNG)
        if self.atelectasis is not None:
            thickness, hu = self.atelectasis
            posterior = (lv.cy + back - 40.0 * self.s) - y
            for side in SIDES:
                band = np.maximum(np.maximum(-lungs[side] - thickness, posterior), z - 0.3 * self.H)
                canvas.paint(np.float32(hu), np.minimum(canvas.occupancy(band, edge_mm=3.0), occ), Tissue.ATELECTASIS)
        return lungs

    def paint_vessels(self, canvas: Canvas, lung_occ: np.ndarray) -> None:
        """Intrapulmonary arteries and veins (their hilar roots are painted with the mediastinum)."""
        tree = self.vessel_tree.where(self.vessel_tree.generation > 0)
        canvas.paint(np.float32(self.blood_hu), np.minimum(canvas.tubes(tree), lung_occ), Tissue.VESSEL)

    def paint_airway_walls(self, canvas: Canvas, lung_occ: np.ndarray) -> None:
        central = self.trachea + self.main_bronchi
        walls = np.maximum(canvas.tubes(central, 1.0, 2.0), np.minimum(canvas.tubes(self.airway_tree, 1.25, 0.6), lung_occ))
        canvas.paint(np.float32(30.0), walls, Tissue.SOFT)

    def paint_airway_lumen(self, canvas: Canvas, lung_occ: np.ndarray) -> None:
        central = self.trachea + self.main_bronchi
        lumen = np.maximum(canvas.tubes(central), np.minimum(canvas.tubes(self.airway_tree), lung_occ))
        canvas.paint(np.float32(-1000.0), lumen, Tissue.AIRWAY)


@dataclass(frozen=True)
class Level:
    """Cross-section parameters of the chest at a set of heights (arrays shaped like ``z``)."""

    z: np.ndarray
    cx: np.ndarray  # centre of the cavity
    cy: np.ndarray
    cavity: tuple  # (half-width, front half-depth, back half-depth) of the thoracic cavity
    muscle: tuple  # the same, out to the muscle's outer surface
    outer: tuple  # the same, out to the skin
    spine_y: np.ndarray  # centre of the vertebral bodies
    mediastinum: np.ndarray  # half-width of the mediastinum
