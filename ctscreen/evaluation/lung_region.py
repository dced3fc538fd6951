"""Figures of a lung region, from any method (the classical extraction, the lung-region model), on
the study's own grid: against a lung truth where there is one, and from the CT alone where there is not.

What matters most is the share of lesion voxels inside the region: COVID-19 lesions sit against the
pleura, and a lesion left outside is never segmented. Without a truth, what the region wrongly took
is measured from HU (``non_lung_share``):

- chest wall: voxels outside any lesion label that are dense (HU > -300) and lie deeper than
  ``vessel_radius_mm`` inside dense tissue. Vessels and airway walls inside the lung are dense too,
  but thin and surrounded by aerated lung; the chest wall, mediastinum or diaphragm a region has
  swallowed is thicker, so only its part deeper than that radius counts (a lower bound);
- outside air: voxels below -950 HU connected within their slice to its sides through such air —
  the air around the patient, which aerated lung (about -850 HU, walled in by the chest) and the
  trachea (walled in too) are not.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from ctscreen.evaluation.metrics import dice
from ctscreen.imaging.lungs import bounding_box
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.lung_region import outside_air
from ctscreen.manifest import read_manifest

DENSE_HU = -300.0
OUTSIDE_AIR_HU = -950.0
VESSEL_RADIUS_MM = 4.0  # intrapulmonary vessels up to 8 mm across lie within this of aerated lung
LungMethod = Callable[[CTVolume], np.ndarray]


def lung_region_figures(region: np.ndarray, volume: CTVolume, lung_truth: np.ndarray | None = None,
                        lesions: np.ndarray | None = None, vessel_radius_mm: float = VESSEL_RADIUS_MM) -> dict:
    """Figures of ``region`` (on ``volume``'s grid); ``lesions`` is a lesion or nodule label on that grid.

    Shares are of the region's voxels, except ``lesion_inside`` (of the lesion voxels); a figure
    that needs what was not given (or a lesion-free label) is None."""
    region = region.astype(bool)
    lesion = np.zeros_like(region) if lesions is None else lesions.astype(bool)
    size = int(region.sum())
    chest_wall, outside = _non_lung(region, volume, lesion, vessel_radius_mm)
    return {
        "region_volume_ml": round(size * volume.voxel_volume_ml, 3),
        "lung_dice": None if lung_truth is None else dice(region, lung_truth),
        "truth_volume_ml": None if lung_truth is None else round(int(np.count_nonzero(lung_truth)) * volume.voxel_volume_ml, 3),
        "lesion_voxels": int(lesion.sum()),
        "lesion_inside": float(region[lesion].mean()) if lesion.any() else None,
        "chest_wall_share": chest_wall / size if size else None,
        "outside_air_share": outside / size if size else None,
        "non_lung_share": (chest_wall + outside) / size if size else None,
    }


def _non_lung(region: np.ndarray, volume: CTVolume, lesion: np.ndarray, vessel_radius_mm: float) -> tuple[int, int]:
    """Voxel counts of the region that are chest wall and outside air (module docstring)."""
    if not region.any():
        return 0, 0
    margin = np.ceil(vessel_radius_mm / np.asarray(volume.spacing_zyx)).astype(int) + 1
    box = bounding_box(region, margin)  # depth into dense tissue needs only the region and a margin
    dense = volume.hu[box] > DENSE_HU
    deep = ndi.distance_transform_edt(dense, sampling=volume.spacing_zyx) > vessel_radius_mm
    chest_wall = int(np.count_nonzero(region[box] & deep & ~lesion[box]))
    return chest_wall, int(np.count_nonzero(region & outside_air(volume.hu, OUTSIDE_AIR_HU)))


def evaluate_lung_method(manifest: str | Path, method: LungMethod, case_ids: set[str] | None = None,
                         progress: bool = True) -> list[dict]:
    """Per case of ``manifest``: its identity and ``lung_region_figures`` of ``method(volume)`` against
    the case's lung and lesion masks, one case in memory at a time."""
    rows = [r for r in read_manifest(manifest) if case_ids is None or r["case_id"] in case_ids]
    out = []
    for row in tqdm(rows, desc="lung regions", unit="case", disable=not progress):
        volume = load_volume(row["image"])
        truth, lesions = (load_volume(row[c]).hu > 0 if row.get(c) else None for c in ("lung_mask", "lesion_mask"))
        figures = lung_region_figures(method(volume), volume, truth, lesions)
        out.append({"case_id": row["case_id"], "site": row["site"], "subtype": row["subtype"], **figures})
    return out


def summarise_lung_regions(rows: list[dict], by: tuple[str, ...] = ("site", "subtype")) -> dict:
    """Means of every figure over the cases that have it: overall (``all``) and per value of each key in ``by``."""
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for key in by:
            groups[key][str(row[key])].append(row)
    summary = {"all": _means(rows)}
    summary.update({key: {value: _means(members) for value, members in sorted(groups[key].items())} for key in by})
    return summary


def _means(rows: list[dict]) -> dict:
    figures = [k for k, v in rows[0].items() if isinstance(v, (int, float)) or v is None] if rows else []
    out: dict = {"cases": len(rows)}
    for name in figures:
        values = [r[name] for r in rows if isinstance(r[name], (int, float))]
        out[name] = float(np.mean(values)) if values else None
    return out
