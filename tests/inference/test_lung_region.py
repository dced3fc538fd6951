"""The lung-region model's post-processing and its run on a volume: two lungs kept, islands dropped,
holes filled, the mask on the study's own grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from ctscreen.errors import InputError
from ctscreen.evaluation.metrics import dice
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.lung_region import LungModelSpec, lung_input, lung_mask_from_probability, lung_mask_on_grid, lung_region
from tests.imaging.chest_phantom import chest_phantom

GRID_SPACING = (5.0, 4.0, 4.0)  # 0.08 ml a voxel
BODY = np.full((20, 40, 40), 40.0, np.float32)  # HU of the grid: soft tissue everywhere, no outside air


def _probability_map(second_lung_width: int) -> np.ndarray:
    """Two box 'lungs' (the second ``second_lung_width`` voxels wide), a 3D hole and a channel
    open at both ends in z inside the first, and a small island."""
    p = np.zeros((20, 40, 40), np.float32)
    p[2:18, 5:35, 3:18] = 0.9  # 576 ml
    p[2:18, 5:35, 22:22 + second_lung_width] = 0.9
    p[8:12, 15:20, 8:12] = 0.1  # a hole closed in 3D: a lesion the network missed
    p[2:18, 25:27, 10:12] = 0.2  # closed in every slice, open through the top and bottom
    p[10:12, 37:39, 38:40] = 0.95  # island
    return p


@pytest.mark.parametrize("width, lungs", [(15, 2), (2, 1)])  # the second region 100% / 13% of the first (kept from 15%)
def test_post_processing_keeps_the_lungs_drops_islands_and_fills_holes(width, lungs):
    grid = CTVolume(BODY, GRID_SPACING)
    mask = lung_mask_on_grid(_probability_map(width), grid)
    assert mask.dtype == np.uint8
    assert ndi.label(mask)[1] == lungs
    assert mask[2:18, 5:35, 3:18].all()  # both holes filled
    assert not mask[10:12, 37:39, 38:40].any()
    assert mask[2:18, 5:35, 22:22 + width].all() == (lungs == 2)


def test_what_the_network_finds_outside_the_body_is_dropped_however_large():
    hu = np.full((20, 60, 60), -1000.0, np.float32)
    hu[:, 9:51, 5:55] = 40.0  # the body
    hu[:, 15:45, 12:27] = hu[:, 15:45, 33:48] = -850.0  # two lungs
    probability = np.where(hu < -500, 0.9, 0.05).astype(np.float32)  # and the air around, larger than both lungs
    mask = lung_mask_on_grid(probability, CTVolume(hu, GRID_SPACING))
    assert ndi.label(mask)[1] == 2
    assert mask[:, 15:45, 12:27].all() and mask[:, 15:45, 33:48].all() and mask.sum() == 2 * 20 * 30 * 15


def test_probability_map_comes_back_on_the_volume_grid():
    grid = CTVolume(BODY, GRID_SPACING, origin=(10.0, -20.0, 5.0))
    volume = CTVolume(np.zeros((40, 80, 80), np.float32), (2.5, 2.0, 2.0), origin=(10.0, -20.0, 5.0))
    on_grid = lung_mask_on_grid(_probability_map(15), grid)
    mask = lung_mask_from_probability(_probability_map(15), grid, volume)
    assert mask.shape == volume.shape_zyx and mask.dtype == np.uint8
    assert ndi.label(mask)[1] == 2
    assert mask.sum() * volume.voxel_volume_ml == pytest.approx(on_grid.sum() * grid.voxel_volume_ml, rel=0.1)
    assert mask[20, 40, 20] == on_grid[10, 20, 10] == 1  # the same point in patient space


@pytest.mark.parametrize("probability", [np.full((20, 40, 40), 0.3, np.float32), _probability_map(15) * (np.arange(40) >= 38)])
def test_no_lung_is_a_clear_error(probability):
    grid = CTVolume(BODY, GRID_SPACING, source="study.nrrd")
    with pytest.raises(InputError, match=r"study.nrrd: no lung found"):
        lung_mask_on_grid(probability, grid)


def test_lung_region_runs_a_predictor_on_the_coarse_grid_and_returns_the_volume_grid():
    volume, lungs, lesion = chest_phantom()
    volume.hu[volume.hu < -950] = 40.0  # body to the edges: no outside air for the stand-in to confuse with lung
    spec = LungModelSpec("unet", "tiny", spacing_zyx=(5.0, 4.0, 4.0), window_zyx=(16, 32, 48))
    image, grid = lung_input(volume, spec)
    assert grid.spacing_zyx == spec.spacing_zyx and image.min() >= 0 and image.max() <= 1
    calls = []

    def dark_is_lung(x: torch.Tensor) -> torch.Tensor:  # a stand-in network: lung where the window is black
        calls.append(tuple(x.shape[2:]))
        return torch.cat([torch.zeros_like(x), 20 * (0.1 - x)], dim=1)

    mask = lung_region(dark_is_lung, volume, spec)
    assert calls and set(calls) == {spec.window_zyx}
    assert mask.shape == volume.shape_zyx and mask.dtype == np.uint8
    assert dice(mask, lungs & ~lesion) > 0.9  # the stand-in sees the dense lesion as chest wall


def test_spec_round_trips_and_checks_its_window():
    spec = LungModelSpec("vnet", "small", spacing_zyx=[5, 4, 4], window_zyx=[32, 96, 96])
    assert spec.spacing_zyx == (5.0, 4.0, 4.0) and spec.window_zyx == (32, 96, 96)
    assert LungModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="multiple of 16"):
        LungModelSpec("unet", "tiny", window_zyx=(30, 96, 96))
    with pytest.raises(ValueError, match="spacing_zyx"):
        LungModelSpec("unet", "tiny", spacing_zyx=(5.0, 0.0, 4.0))
