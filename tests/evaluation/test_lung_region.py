"""Lung-region figures: hand-computed on a small chest, summaries by site and subtype, both methods
through one function, and the classical extraction's figures on real CT."""

from __future__ import annotations

import numpy as np
import pytest

from ctscreen.evaluation.lung_region import evaluate_lung_method, lung_region_figures, summarise_lung_regions
from ctscreen.imaging.lungs import extract_lungs
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.volume import CTVolume


def _slab_chest():
    """Along x: outside air (0-2), 24 mm of chest wall (3-14), lung (15-26), mediastinum (27-29);
    a 2 mm vessel in the lung, a trachea-like air column leaving through the top slice."""
    hu = np.full((4, 10, 30), -1000.0, np.float32)
    hu[:, :, 3:15] = 40.0
    hu[:, :, 15:27] = -850.0
    hu[:, :, 27:] = 40.0
    hu[:, 5, 20] = 40.0  # vessel
    hu[0:2, 4:6, 18:20] = -1000.0  # airway, open at z = 0 only
    volume = CTVolume(hu, (2.0, 2.0, 2.0))  # 0.008 ml a voxel
    region = np.zeros(hu.shape, bool)
    region[:, :, 1:27] = True  # 2 columns of outside air, the whole chest wall, the lung
    truth = np.zeros(hu.shape, bool)
    truth[:, :, 15:27] = True
    lesions = np.zeros(hu.shape, bool)
    lesions[:, :, 11:13] = True  # inside the wall's deep part: not counted as chest wall
    lesions[:, :, 26:28] = True  # half outside the region
    return volume, region, truth, lesions


def test_figures_against_hand_computed_values():
    volume, region, truth, lesions = _slab_chest()
    figures = lung_region_figures(region, volume, truth, lesions)
    column = 4 * 10  # voxels in one x position
    # dense voxels deeper than 4 mm in the 24 mm wall: x 5..12 (6 mm or more from air on either side)
    chest_wall = 6 * column  # x 5..10; 11 and 12 are lesion
    assert figures == {
        "region_volume_ml": pytest.approx(26 * column * 0.008),
        "lung_dice": pytest.approx(2 * 12 * column / (26 * column + 12 * column)),
        "truth_volume_ml": pytest.approx(12 * column * 0.008),
        "lesion_voxels": 4 * column,
        "lesion_inside": pytest.approx(0.75),
        "chest_wall_share": pytest.approx(chest_wall / (26 * column)),
        "outside_air_share": pytest.approx(2 * column / (26 * column)),
        "non_lung_share": pytest.approx((chest_wall + 2 * column) / (26 * column)),
    }


def test_figures_without_truth_lesions_or_region():
    volume, region, _, _ = _slab_chest()
    figures = lung_region_figures(region, volume)
    assert figures["lung_dice"] is None and figures["truth_volume_ml"] is None and figures["lesion_inside"] is None
    assert figures["chest_wall_share"] == pytest.approx(8 / 26)  # x 5..12, nothing excluded
    empty = lung_region_figures(np.zeros_like(region), volume, region, region)
    assert empty["region_volume_ml"] == 0 and empty["lung_dice"] == 0 and empty["lesion_inside"] == 0
    assert empty["chest_wall_share"] is None and empty["non_lung_share"] is None


def test_summary_by_site_and_subtype():
    rows = [
        {"case_id": "a", "site": "s1", "subtype": "covid", "lung_dice": 0.9, "lesion_inside": 1.0},
        {"case_id": "b", "site": "s1", "subtype": "healthy", "lung_dice": 0.7, "lesion_inside": None},
        {"case_id": "c", "site": "s2", "subtype": "covid", "lung_dice": 0.8, "lesion_inside": 0.5},
    ]
    summary = summarise_lung_regions(rows)
    assert summary["all"] == {"cases": 3, "lung_dice": pytest.approx(0.8), "lesion_inside": pytest.approx(0.75)}
    assert summary["site"]["s1"] == {"cases": 2, "lung_dice": pytest.approx(0.8), "lesion_inside": 1.0}
    assert summary["subtype"]["healthy"] == {"cases": 1, "lung_dice": 0.7, "lesion_inside": None}
    assert set(summary["subtype"]) == {"covid", "healthy"}


def test_classical_method_on_synthetic_cases(tmp_path):
    from ctscreen.imaging.synth import generate_dataset

    manifest = generate_dataset(tmp_path / "data", cases=3, sites=2, seed=4, profile="tiny", progress=False)
    rows = evaluate_lung_method(manifest, extract_lungs, progress=False)
    assert [r["case_id"] for r in rows] == ["case-00000", "case-00001", "case-00002"]
    for row in rows:
        assert row["lung_dice"] > 0.9 and row["outside_air_share"] == 0
        assert row["region_volume_ml"] == pytest.approx(row["truth_volume_ml"], rel=0.15)
    summary = summarise_lung_regions(rows)
    assert summary["all"]["cases"] == 3 and sum(s["cases"] for s in summary["site"].values()) == 3


def test_classical_figures_on_real_chest_ct(real_chest_ct, real_nodule_label):
    volume = load_volume(real_chest_ct)
    nodule = load_volume(real_nodule_label).hu > 0
    figures = lung_region_figures(extract_lungs(volume), volume, lesions=nodule)
    assert figures["lesion_voxels"] == 837 and figures["lesion_inside"] == 1.0
    assert 1500 < figures["region_volume_ml"] < 5000  # upper thorax of an adult
    assert figures["outside_air_share"] == 0  # the classical region lies inside the body by construction
    assert figures["chest_wall_share"] < 0.01
