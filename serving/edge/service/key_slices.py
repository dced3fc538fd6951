"""The study page's pictures: the slices with the largest lesion burden in a lung window, lesions
filled in red and outlined, the lung region's edge in green — made once, at screening."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

LUNG_WINDOW = (-1350.0, 150.0)  # level -600, width 1500
LESION_RGB = np.array([230, 30, 30], dtype=np.float32)
LUNG_RGB = np.array([60, 220, 60], dtype=np.uint8)


def render_slice(hu: np.ndarray, lesions: np.ndarray, lungs: np.ndarray) -> bytes:
    low, high = LUNG_WINDOW
    gray = (np.clip((hu.astype(np.float32) - low) / (high - low), 0, 1) * 255).astype(np.float32)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    lesion = lesions.astype(bool)
    rgb[lesion] = 0.55 * rgb[lesion] + 0.45 * LESION_RGB
    rgb = rgb.astype(np.uint8)
    rgb[_edge(lungs.astype(bool))] = LUNG_RGB
    rgb[_edge(lesion)] = LESION_RGB.astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def write_key_slices(hu: np.ndarray, lesions: np.ndarray, lungs: np.ndarray, slices: list[int], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for z in slices:
        path = folder / f"slice_{z:04d}.png"
        path.write_bytes(render_slice(hu[z], lesions[z], lungs[z]))
        paths.append(path)
    return paths
