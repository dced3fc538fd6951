"""Case specifications and sampling grids: everything about a case except its pixels.

A case is drawn from random streams seeded by (seed, index, stream) alone, so case i is the same
whether a dataset holds 10 or 1,000 cases. Subtypes are dealt from shuffled blocks of eight (four
COVID-19, one of each negative), which keeps even small datasets balanced without breaking that rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from pydicom.uid import generate_uid

from ctscreen.imaging.synth.anatomy import Chest, Patient
from ctscreen.imaging.synth.lesions import MAKERS, Component
from ctscreen.imaging.synth.phi import FakePHI, fake_phi
from ctscreen.imaging.synth.sites import KERNEL_KINDS, SCANNERS, KernelKind, Scanner, Site

SUBTYPES = ("covid", "other-pneumonia", "tumour", "old-lesion", "healthy")
POSITIVE_SUBTYPES = ("covid",)
_BLOCK = ("covid",) * 4 + SUBTYPES[1:]
_AGE = {"covid": (52, 15), "other-pneumonia": (55, 18), "tumour": (63, 10), "old-lesion": (60, 12), "healthy": (45, 15)}
NATIVE_MATRIX = 512  # scanners reconstruct 512 x 512; noise levels are specified there

# Independent random streams of a case, so that adding draws to one never shifts another.
STREAM_CASE, STREAM_ANATOMY, STREAM_LESIONS, STREAM_NOISE, STREAM_PHI, STREAM_SUBTYPE = range(6)


def case_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


@dataclass(frozen=True)
class Profile:
    """A sampling grid policy: in-plane matrix and, if set, a cap on the number of slices."""

    name: str
    matrix: int
    max_slices: int | None  # None: the protocol's own slice spacing


PROFILES = {p.name: p for p in (Profile("tiny", 64, 32), Profile("small", 128, 64), Profile("full", 512, None))}


@dataclass(frozen=True)
class Grid:
    """Voxel centres in DICOM patient coordinates (identity orientation), axes in (z, y, x) order."""

    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(o + s * np.arange(n) for o, s, n in zip(self.origin_xyz[::-1], self.spacing_zyx, self.shape_zyx))


@dataclass(frozen=True)
class Scan:
    scanner: Scanner
    kernel_kind: str
    kernel: str
    thickness_mm: float
    fov_mm: float
    noise_hu: float  # noise sigma of the native 512 x 512 reconstruction
    table: bool
    position: tuple[float, float, float]  # DICOM coordinates of the patient-frame origin
    z_range: tuple[float, float]  # patient-frame z covered by the scan

    @property
    def kernel_params(self) -> KernelKind:
        return KERNEL_KINDS[self.kernel_kind]


@dataclass(frozen=True)
class CaseSpec:
    seed: int
    index: int
    case_id: str
    patient_id: str  # pseudonymous: safe to list in a manifest, unlike the fake PHI
    subtype: str
    site: Site
    scan: Scan
    patient: Patient
    chest: Chest
    lesions: tuple[Component, ...]
    acquired: datetime
    phi: FakePHI
    uids: tuple[str, str, str]  # study, series, frame of reference

    @property
    def label(self) -> str:
        return "positive" if self.subtype in POSITIVE_SUBTYPES else "negative"


def subtype_of(seed: int, index: int) -> str:
    block = np.random.default_rng([seed, index // len(_BLOCK), STREAM_SUBTYPE]).permutation(len(_BLOCK))
    return _BLOCK[block[index % len(_BLOCK)]]


def _patient(rng: np.random.Generator, site: Site, subtype: str) -> Patient:
    sex = str(rng.choice(["F", "M"]))
    mean_age, sd_age = _AGE[subtype]
    age = int(np.clip(rng.normal(mean_age, sd_age), 18, 90))
    scale = np.clip(site.build[0] * (1.04 if sex == "M" else 0.95) * rng.normal(1.0, site.build[1]), 0.85, 1.2)
    fat = float(np.clip(rng.normal(site.fat_mm[0] + (4.0 if sex == "F" else 0.0), site.fat_mm[1]), 3.0, 45.0))
    return Patient(sex, age, float(scale), float(rng.normal(1.0, 0.04)), float(rng.normal(1.0, 0.05)), fat)


def make_case(seed: int, index: int, sites: tuple[Site, ...]) -> CaseSpec:
    """The full description of case ``index``: patient, anatomy, lesions, scan protocol and PHI."""
    rng = case_rng(seed, index, STREAM_CASE)
    subtype = subtype_of(seed, index)
    site = sites[int(rng.integers(len(sites)))]
    scanner = SCANNERS[site.scanners[int(rng.integers(len(site.scanners)))]]
    kind, kernel, thickness = scanner.sample_protocol(rng)
    patient = _patient(rng, site, subtype)
    chest = Chest(patient, case_rng(seed, index, STREAM_ANATOMY), atelectasis=rng.uniform() < 0.35)
    lesions = tuple(MAKERS[subtype](chest, case_rng(seed, index, STREAM_LESIONS)))

    fov = float(np.clip(max(rng.uniform(*site.fov_mm), 2 * chest.body_half_width() + 20.0), 250.0, 500.0))
    size = patient.scale * np.sqrt(patient.width * patient.depth) * (1.0 + patient.fat_mm / 100.0)
    noise = scanner.noise_hu * KERNEL_KINDS[kind].noise_factor * np.sqrt(5.0 / thickness) * site.dose * size ** 2.5
    z_lo, z_hi = chest.scan_range()
    scan = Scan(
        scanner, kind, kernel, thickness, round(fov), float(min(noise, 250.0)), bool(rng.uniform() < site.table_visible),
        (float(rng.normal(0.0, 6.0)), float(rng.normal(0.0, 8.0)), float(-rng.uniform(100.0, 400.0))),
        (z_lo - rng.uniform(0.0, 15.0), z_hi + rng.uniform(0.0, 10.0)),
    )
    acquired = datetime(2020, 1, 10, 7) + timedelta(days=int(rng.integers(0, 70)), minutes=int(rng.integers(0, 14 * 60)))
    phi = fake_phi(case_rng(seed, index, STREAM_PHI), site, scanner, patient.sex, patient.age, acquired)
    entropy = ["ctscreen-synth", str(seed), str(index)]
    uids = tuple(generate_uid(entropy_srcs=entropy + [part]) for part in ("study", "series", "frame"))
    pseudonym = hashlib.sha256(f"ctscreen-synth:{seed}:{index}".encode()).hexdigest()[:12]
    return CaseSpec(seed, index, f"case-{index:05d}", f"anon-{pseudonym}", subtype, site, scan, patient, chest,
                    lesions, acquired, phi, uids)


def case_grid(spec: CaseSpec, profile: str | Profile) -> Grid:
    """The case's sampling grid under a profile; a custom Profile gives e.g. 512 x 512 x 300 for benchmarks.

    In-plane the matrix covers the scan's field of view; along z the spacing is the slice thickness,
    widened (as a gapped reconstruction) when the profile caps the number of slices. Spacings and
    origin are rounded so DICOM's decimal strings hold them exactly.
    """
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    scan = spec.scan
    pixel = round(scan.fov_mm / profile.matrix, 4)
    z_lo, z_hi = scan.z_range
    extent = z_hi - z_lo
    dz = scan.thickness_mm
    if profile.max_slices is not None:
        dz = max(dz, float(np.ceil(extent / (profile.max_slices - 1) * 100.0) / 100.0))
    dz = round(dz, 4)
    nz = int(np.floor(extent / dz + 1e-6)) + 1
    half = (profile.matrix - 1) / 2 * pixel
    origin = (round(-half, 4), round(-half, 4), round(z_lo + scan.position[2], 4))
    return Grid((nz, profile.matrix, profile.matrix), (dz, pixel, pixel), origin)


def clinical_grid(spec: CaseSpec, slices: int) -> Grid:
    """The full profile's 512 x 512 plane with exactly ``slices`` slices over the scanned range."""
    full = case_grid(spec, "full")
    low, high = spec.scan.z_range
    return Grid((slices, *full.shape_zyx[1:]), (round((high - low) / (slices - 1), 4), *full.spacing_zyx[1:]), full.origin_xyz)
