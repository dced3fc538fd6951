"""A geometric chest for lung-extraction tests: body, two lungs, and a dense lesion on the pleura."""

from __future__ import annotations

import numpy as np

from ctscreen.imaging.volume import CTVolume

SPACING = (2.5, 1.0, 1.0)


def chest_phantom(lesion_radius_mm: float = 12.0) -> tuple[CTVolume, np.ndarray, np.ndarray]:
    """(volume, true lung region, juxta-pleural lesion) on a 1 x 1 x 2.5 mm grid."""
    z, y, x = np.mgrid[0:48, 0:200, 0:260].astype(np.float32)
    zc, yc = 24.0, 100.0
    hu = np.full(z.shape, -1000.0, np.float32)
    body = ((y - yc) / 90) ** 2 + ((x - 130) / 120) ** 2 <= 1
    hu[body] = 40.0
    lungs = np.zeros(z.shape, bool)
    for xc in (80.0, 180.0):
        lungs |= ((z - zc) / 20) ** 2 + ((y - yc) / 65) ** 2 + ((x - xc) / 40) ** 2 <= 1
    hu[lungs] = -860.0
    # consolidation against the lateral pleura of the left lung: as dense as the chest wall
    lesion = lungs & (((z - zc) * SPACING[0]) ** 2 + (y - yc) ** 2 + (x - 40.0) ** 2 <= lesion_radius_mm**2)
    hu[lesion] = 30.0
    hu += np.random.default_rng(1).normal(0, 10, hu.shape).astype(np.float32)
    volume = CTVolume(hu, SPACING, origin=(-130.0, -100.0, -60.0))
    return volume, lungs, lesion
