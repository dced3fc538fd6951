"""Scanner and hospital catalogue: the acquisition differences a model must generalise over.

The paper's data came from 5 hospitals and 11 scanner models with slices from 0.625 to 10 mm (81 %
under 2 mm). Each scanner here carries its DICOM identity, its reconstruction kernels and slice
protocols; each fictional hospital has its own scanner park, field-of-view habits, dose level and
patient build, so that cases differ by site the way real multi-site data does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KernelKind:
    """How a family of reconstruction kernels renders detail and noise."""

    blur_mm: float  # Gaussian sigma of the in-plane resolution loss
    sharpen: float  # edge-enhancement gain: lung and bone kernels overshoot at edges
    grain_mm: float  # Gaussian sigma of the noise correlation (fine grain for sharp kernels)
    noise_factor: float  # noise relative to the standard soft-tissue kernel


KERNEL_KINDS = {
    "lung": KernelKind(blur_mm=0.35, sharpen=0.6, grain_mm=0.35, noise_factor=2.6),
    "bone": KernelKind(blur_mm=0.3, sharpen=0.9, grain_mm=0.3, noise_factor=3.2),
    "standard": KernelKind(blur_mm=0.65, sharpen=0.0, grain_mm=0.75, noise_factor=1.0),
    "soft": KernelKind(blur_mm=0.85, sharpen=0.0, grain_mm=1.0, noise_factor=0.8),
}
KERNEL_WEIGHTS = {"lung": 0.6, "standard": 0.3, "soft": 0.05, "bone": 0.05}


@dataclass(frozen=True)
class Scanner:
    key: str
    manufacturer: str  # as written to (0008,0070)
    model: str  # as written to (0008,1090)
    kernels: dict[str, str]  # kernel kind -> the vendor's ConvolutionKernel name
    thicknesses: tuple[float, ...]  # reconstructed slice thicknesses (mm) the protocols use
    thickness_weights: tuple[float, ...]
    noise_hu: float  # noise sigma at 5 mm, standard kernel, average adult, routine dose
    software: str

    def sample_protocol(self, rng: np.random.Generator) -> tuple[str, str, float]:
        """(kernel kind, kernel name, slice thickness) of one chest series."""
        kinds = [k for k in KERNEL_WEIGHTS if k in self.kernels]
        weights = np.array([KERNEL_WEIGHTS[k] for k in kinds])
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        p = np.array(self.thickness_weights) / sum(self.thickness_weights)
        thickness = float(self.thicknesses[rng.choice(len(self.thicknesses), p=p)])
        return kind, self.kernels[kind], thickness


SCANNERS = {
    s.key: s
    for s in (
        Scanner("ge-lightspeed-vct", "GE MEDICAL SYSTEMS", "LightSpeed VCT",
                {"lung": "LUNG", "standard": "STANDARD", "soft": "SOFT", "bone": "BONE"},
                (0.625, 1.25, 2.5, 5.0), (0.4, 0.35, 0.1, 0.15), 11.0, "LightSpeedverrel"),
        Scanner("ge-revolution", "GE MEDICAL SYSTEMS", "Revolution CT",
                {"lung": "LUNG", "standard": "STANDARD", "bone": "BONEPLUS"},
                (0.625, 1.25, 5.0), (0.55, 0.35, 0.1), 7.5, "revo_ct_21a.33"),
        Scanner("ge-discovery-ct750hd", "GE MEDICAL SYSTEMS", "Discovery CT750 HD",
                {"lung": "LUNG", "standard": "STANDARD", "soft": "SOFT", "bone": "BONEPLUS"},
                (0.625, 1.25, 5.0), (0.45, 0.4, 0.15), 9.5, "gmp_hde.49"),
        Scanner("siemens-definition-as", "SIEMENS", "SOMATOM Definition AS+",
                {"lung": "B70f", "standard": "B31f", "soft": "B20f", "bone": "B60f"},
                (1.0, 1.5, 2.0, 5.0), (0.5, 0.25, 0.1, 0.15), 10.0, "syngo CT 2012B"),
        Scanner("siemens-force", "SIEMENS", "SOMATOM Force",
                {"lung": "Bl57d", "standard": "Br40d", "bone": "Br64d"},
                (0.6, 1.0, 1.5, 3.0), (0.2, 0.5, 0.2, 0.1), 6.5, "syngo CT VA50A"),
        Scanner("siemens-emotion16", "SIEMENS", "Emotion 16",
                {"lung": "B70s", "standard": "B41s", "soft": "B30s"},
                (1.5, 5.0, 8.0, 10.0), (0.35, 0.35, 0.1, 0.2), 14.0, "syngo CT 2007S"),
        Scanner("philips-brilliance-ict", "Philips", "Brilliance iCT",
                {"lung": "L", "standard": "B", "soft": "A", "bone": "YC"},
                (0.67, 1.0, 2.0, 5.0), (0.35, 0.4, 0.1, 0.15), 10.0, "4.1.6"),
        Scanner("philips-ingenuity", "Philips", "Ingenuity CT",
                {"lung": "YA", "standard": "B", "soft": "A"},
                (1.0, 2.0, 5.0), (0.65, 0.15, 0.2), 11.0, "4.1.2"),
        Scanner("toshiba-aquilion-one", "TOSHIBA", "Aquilion ONE",
                {"lung": "FC52", "standard": "FC13", "soft": "FC03", "bone": "FC86"},
                (0.5, 1.0, 2.0, 5.0), (0.35, 0.45, 0.05, 0.15), 8.0, "V6.00ER009"),
        Scanner("canon-aquilion-prime", "CANON_MEC", "Aquilion PRIME",
                {"lung": "FC51", "standard": "FC18", "soft": "FC04"},
                (0.5, 1.0, 5.0), (0.3, 0.55, 0.15), 9.5, "V8.6SP0002"),
        Scanner("uih-uct760", "UIH", "uCT 760",
                {"lung": "B_SHARP_C", "standard": "B_SOFT_B", "soft": "B_SOFT_A"},
                (1.0, 1.5, 5.0, 10.0), (0.55, 0.2, 0.15, 0.1), 9.0, "R001"),
    )
}


@dataclass(frozen=True)
class Site:
    """A fictional hospital: who it scans, with what, and how."""

    key: str
    name: str
    address: str
    phone_area: str
    mrn_prefix: str
    scanners: tuple[str, ...]  # keys into SCANNERS, 1 to 3
    fov_mm: tuple[float, float]  # display field of view its technologists choose
    dose: float  # noise multiplier of its protocol (> 1: low-dose screening)
    build: tuple[float, float]  # mean and sd of its patients' body scale
    fat_mm: tuple[float, float]  # mean and sd of subcutaneous fat
    table_visible: float  # share of series whose field of view includes the table

    @property
    def code(self) -> str:
        return "".join(word[0] for word in self.name.split()[:3]).upper()


SITES = (
    Site("eastlake", "Eastlake University Hospital", "88 Lakeview Road, Eastlake District, Riverton",
         "555-27", "EL", ("uih-uct760", "toshiba-aquilion-one", "ge-lightspeed-vct"),
         (330, 380), 1.3, (0.96, 0.05), (12, 5), 0.9),
    Site("riverside", "Riverside Central Hospital", "1200 Harbour Avenue, Riverside, Port Alden",
         "555-31", "RC", ("siemens-definition-as", "siemens-emotion16"),
         (350, 420), 1.0, (1.0, 0.06), (16, 6), 0.8),
    Site("northgate", "Northgate People's Hospital", "7 Garden Street, Northgate, Kingsford",
         "555-44", "NG", ("philips-brilliance-ict", "philips-ingenuity"),
         (360, 400), 1.1, (0.98, 0.05), (14, 5), 1.0),
    Site("westhill", "Westhill Chest Hospital", "45 Summit Lane, Westhill, Marlow Bay",
         "555-19", "WH", ("ge-revolution", "siemens-force"),
         (320, 360), 0.9, (1.02, 0.05), (18, 7), 0.6),
    Site("harbour", "Harbour District Infectious Disease Hospital", "3 Quay Road, Harbour District, Riverton",
         "555-27", "HD", ("uih-uct760", "canon-aquilion-prime"),
         (380, 460), 1.5, (0.97, 0.06), (12, 5), 1.0),
    Site("greenfield", "Greenfield County Hospital", "210 Mill Road, Greenfield, Ashby",
         "555-62", "GF", ("siemens-emotion16",),
         (400, 500), 1.2, (1.03, 0.07), (20, 8), 1.0),
    Site("summit", "Summit Medical Center", "900 Ridge Boulevard, Summit Heights, Kingsford",
         "555-44", "SM", ("ge-discovery-ct750hd", "toshiba-aquilion-one"),
         (340, 380), 1.0, (1.0, 0.05), (15, 6), 0.7),
    Site("lakeshore", "Lakeshore Union Hospital", "16 Shore Drive, Lakeshore, Port Alden",
         "555-31", "LU", ("philips-brilliance-ict", "ge-discovery-ct750hd", "siemens-force"),
         (350, 400), 0.95, (1.01, 0.06), (17, 6), 0.85),
)

SITE_STREAM = 7  # seed-sequence stream that orders the catalogue for a dataset


def choose_sites(seed: int, count: int) -> tuple[Site, ...]:
    """The first ``count`` sites of a seed-dependent order: a dataset with more sites keeps the fewer's."""
    order = np.random.default_rng([seed, SITE_STREAM]).permutation(len(SITES))
    return tuple(SITES[i] for i in order[:count])
