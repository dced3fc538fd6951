"""What reconstruction does to the ideal image: slice profile, kernel blur and overshoot, correlated noise.

Effects are specified in mm so they shrink away on coarse grids: a 128 x 128 image of a 350 mm field
is like the full-resolution one averaged over 4 x 4 pixels, where a 0.35 mm blur or grain is invisible.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ctscreen.imaging.synth.sites import KernelKind

TRUNCATE = 3.0
MIN_SIGMA_PX = 0.15  # below this a Gaussian changes nothing worth the time
HU_RANGE = (-1024.0, 3071.0)  # what 12-bit CT storage holds


def _noise_gain(sigma_px: float) -> float:
    """Standard deviation of unit white noise after a 2-D Gaussian of ``sigma_px`` (as scipy builds it)."""
    radius = int(TRUNCATE * sigma_px + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    w /= w.sum()
    return float((w * w).sum())


def apply_scanner(hu: np.ndarray, spacing_zyx: tuple[float, float, float], thickness_mm: float,
                  kernel: KernelKind, noise_hu: float, rng: np.random.Generator, slab: int) -> None:
    """Degrade the ideal HU volume in place, ``slab`` slices at a time to bound memory."""
    dz, dy, _ = spacing_zyx
    sigma_z = thickness_mm / 2.355 / dz  # the slice sensitivity profile, FWHM = slice thickness
    if sigma_z > MIN_SIGMA_PX:
        ndimage.gaussian_filter1d(hu, sigma_z, axis=0, truncate=TRUNCATE, output=hu)  # line-buffered: safe in place
    blur = kernel.blur_mm / dy
    overshoot = 2.0 * kernel.blur_mm / dy
    grain = kernel.grain_mm / dy
    for k in range(0, hu.shape[0], slab):
        part = hu[k:k + slab]
        if blur > MIN_SIGMA_PX:
            part[:] = ndimage.gaussian_filter(part, (0, blur, blur), truncate=TRUNCATE)
        if kernel.sharpen and overshoot > 0.5:
            part += np.float32(kernel.sharpen) * (part - ndimage.gaussian_filter(part, (0, overshoot, overshoot), truncate=TRUNCATE))
        noise = rng.standard_normal(part.shape, dtype=np.float32)
        if grain > MIN_SIGMA_PX:
            noise = ndimage.gaussian_filter(noise, (0, grain, grain), truncate=TRUNCATE) * np.float32(1.0 / _noise_gain(grain))
        part += noise * np.float32(noise_hu)
    np.clip(hu, *HU_RANGE, out=hu)
