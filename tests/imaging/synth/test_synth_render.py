"""Rendered cases in memory: realistic tissue values, lesions that look like their subtype, profiles, sites."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ctscreen.imaging.synth import (
    PROFILES, SCANNERS, SITES, Grid, Profile, Tissue, case_grid, choose_sites, make_case, render_case,
)


@pytest.fixture(scope="module")
def block():
    """The first block of eight cases of seed 0 (every subtype), rendered on the small profile."""
    sites = choose_sites(0, 3)
    specs = [make_case(0, i, sites) for i in range(8)]
    return [(spec, render_case(spec, case_grid(spec, "small"))) for spec in specs]


def _of(block, subtype):
    return [(spec, rendered) for spec, rendered in block if spec.subtype == subtype]


def _sides(rendered) -> tuple[float, float]:
    """Share of lesion voxels on each side of the lungs' midline."""
    mid = np.nonzero(rendered.lung_mask)[2].mean()
    x = np.nonzero(rendered.lesion_mask)[2]
    return float((x < mid).mean()), float((x >= mid).mean())


def _depth(rendered) -> np.ndarray:
    """Distance (mm) of every voxel to the outside of the lungs."""
    return ndimage.distance_transform_edt(rendered.lung_mask, sampling=rendered.spacing_zyx)


def test_tissue_values_are_realistic(block):
    for spec, r in block:
        hu, tissue = r.hu, r.tissue
        near_lesion = ndimage.binary_dilation(r.lesion_mask.astype(bool), iterations=3)
        lung = r.lung_mask.astype(bool) & ~near_lesion
        assert -900 <= hu[lung].mean() <= -750, spec.case_id
        assert -130 <= hu[tissue == Tissue.FAT].mean() <= -70, spec.case_id
        assert 20 <= hu[tissue == Tissue.MUSCLE].mean() <= 80, spec.case_id
        assert np.median(hu[tissue == Tissue.BONE]) > 300, spec.case_id
        assert -1024 <= hu[tissue == Tissue.AIR].mean() <= -970, spec.case_id
        assert hu[tissue == Tissue.AIRWAY].mean() < -800, spec.case_id


def test_lesions_lie_inside_the_lungs(block):
    for spec, r in block:
        assert not (r.lesion_mask.astype(bool) & ~r.lung_mask.astype(bool)).any(), spec.case_id
        assert r.lesion_mask.any() == (spec.subtype != "healthy"), spec.case_id


def test_covid_lesions_are_bilateral_ground_glass_against_the_pleura(block):
    cases = _of(block, "covid")
    assert len(cases) == 4
    for spec, r in cases:
        lesion = r.lesion_mask.astype(bool)
        assert min(_sides(r)) >= 0.05, spec.case_id
        depth = _depth(r)
        assert np.median(depth[lesion]) <= 0.75 * np.median(depth[r.lung_mask.astype(bool)]), spec.case_id
        assert depth[lesion].min() <= max(r.spacing_zyx) + 1e-6, spec.case_id  # touches the pleura
        assert -750 <= np.median(r.hu[lesion]) <= -350, spec.case_id


def test_other_pneumonia_is_a_mostly_unilateral_consolidation(block):
    for spec, r in _of(block, "other-pneumonia"):
        assert max(_sides(r)) >= 0.8, spec.case_id
        assert np.median(r.hu[r.lesion_mask.astype(bool)]) > -300, spec.case_id


def test_tumour_is_solid_and_old_lesion_is_calcified(block):
    (_, tumour), = _of(block, "tumour")
    assert np.percentile(tumour.hu[tumour.lesion_mask.astype(bool)], 95) > -100  # a solid mass, maybe in a ground-glass halo
    (spec, _), = _of(block, "old-lesion")
    nodule = next(c for c in spec.lesions if c.layer == "calcified")
    full = case_grid(spec, "full")
    z = nodule.center[2] + spec.scan.position[2]
    at_nodule = render_case(spec, Grid((1, 512, 512), full.spacing_zyx, (*full.origin_xyz[:2], z)))
    assert at_nodule.hu[at_nodule.lesion_mask.astype(bool)].max() > 200  # calcified, at scanner resolution


def test_healthy_has_no_lesion(block):
    (_, healthy), = _of(block, "healthy")
    assert not healthy.lesion_mask.any()


def test_anatomy_in_mm_does_not_depend_on_the_profile(block):
    spec, small = block[0]
    tiny = render_case(spec, case_grid(spec, "tiny"))
    assert tiny.hu.shape[1:] == (64, 64) and tiny.hu.shape[0] <= 32
    small_ml, tiny_ml = (r.lung_mask.sum() * np.prod(r.spacing_zyx) / 1000 for r in (small, tiny))
    assert tiny_ml == pytest.approx(small_ml, rel=0.03)


def test_full_profile_is_512_at_the_protocol_spacing(block):
    spec, small = block[2]
    full = case_grid(spec, "full")
    assert full.shape_zyx[1:] == (512, 512)
    assert full.spacing_zyx[0] == pytest.approx(spec.scan.thickness_mm)
    assert full.spacing_zyx[1] * 512 == pytest.approx(spec.scan.fov_mm, abs=0.1)
    # One slab of the full grid at the height of a small-profile slice: same lung cross-section.
    k = small.hu.shape[0] // 2
    z = small.origin_xyz[2] + k * small.spacing_zyx[0]
    slab = render_case(spec, Grid((2, 512, 512), (full.spacing_zyx[0], *full.spacing_zyx[1:]), (*full.origin_xyz[:2], z)))
    assert slab.hu.shape == (2, 512, 512) and slab.hu.dtype == np.float32
    area_full = slab.lung_mask[0].sum() * full.spacing_zyx[1] ** 2
    area_small = small.lung_mask[k].sum() * small.spacing_zyx[1] ** 2
    assert area_full == pytest.approx(area_small, rel=0.03)


def test_custom_profile_caps_the_slices(block):
    spec, _ = block[0]
    grid = case_grid(spec, Profile("bench", 512, 300))
    assert grid.shape_zyx[1:] == (512, 512) and grid.shape_zyx[0] <= 300


def test_catalogue_spans_the_papers_scanners_and_sites():
    assert len(SCANNERS) >= 11
    assert len({s.manufacturer for s in SCANNERS.values()}) >= 5
    thicknesses = [t for s in SCANNERS.values() for t in s.thicknesses]
    assert min(thicknesses) <= 0.625 and max(thicknesses) >= 10
    rng = np.random.default_rng(0)
    drawn = [s.sample_protocol(rng)[2] for s in SCANNERS.values() for _ in range(200)]
    assert 0.7 <= np.mean(np.array(drawn) < 2.0) <= 0.9  # the paper: 81 % under 2 mm
    assert {key for site in SITES for key in site.scanners} == set(SCANNERS)
    assert all(1 <= len(site.scanners) <= 3 for site in SITES)
    assert choose_sites(3, 4)[:2] == choose_sites(3, 2)
    assert len({site.key for site in choose_sites(3, len(SITES))}) == len(SITES)
    assert set(PROFILES) == {"tiny", "small", "full"}
