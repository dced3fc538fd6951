"""Shared fixtures: the real CT of ../shared/data/real-ct, and small DICOM series written on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REAL_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct"


def _real_ct_path(name: str) -> Path:
    path = REAL_CT / name
    if not path.exists():
        pytest.skip(f"real CT fixture {path} is absent (it ships with this project's shared/ folder, not with a plain clone)")
    return path


@pytest.fixture
def real_chest_ct() -> Path:
    """pyradiomics' chest CT (NRRD), 512 x 512 x 48 at 0.57 x 0.57 x 5 mm, with a nodule label."""
    return _real_ct_path("lung1_image.nrrd")


@pytest.fixture
def real_nodule_label() -> Path:
    return _real_ct_path("lung1_label.nrrd")


@pytest.fixture
def real_j2k_series() -> Path:
    """TotalSegmentator's 20-slice JPEG 2000 lossless DICOM series (upper abdomen, lung bases)."""
    return _real_ct_path("abdomen_ct_dicom_j2k")


@pytest.fixture
def phantom_hu() -> np.ndarray:
    """A small deterministic HU volume: body ellipse with two air-filled 'lungs' and noise."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[0:12, 0:48, 0:48]
    hu = np.full(z.shape, -1000.0, np.float32)
    body = ((y - 24) / 20) ** 2 + ((x - 24) / 22) ** 2 <= 1
    hu[body] = 40.0
    for cx in (14, 34):
        hu[((y - 24) / 12) ** 2 + ((x - cx) / 7) ** 2 <= 1] = -850.0
    return hu + rng.normal(0, 5, hu.shape).astype(np.float32)
