"""Classical lung extraction keeps pleural lesions, nodules and vessels inside the lung region."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull

from ctscreen.cli import main
from ctscreen.imaging.lungs import IN_PLANE, _convex_hull, extract_lungs, fill_holes
from ctscreen.imaging.readers import load_volume
from tests.imaging.chest_phantom import chest_phantom


def _dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_juxta_pleural_lesion_stays_inside_the_lung_region():
    volume, lungs, lesion = chest_phantom()
    plain_threshold = volume.hu < -400
    assert (plain_threshold[lesion]).mean() < 0.05  # what a threshold would lose
    mask = extract_lungs(volume).astype(bool)
    assert mask[lesion].mean() > 0.95
    assert _dice(mask, lungs) > 0.97


def test_mediastinum_between_the_lungs_is_not_bridged():
    volume, lungs, _ = chest_phantom()
    mask = extract_lungs(volume).astype(bool)
    gap = np.zeros_like(mask)
    gap[:, :, 125:135] = True  # midline between the two lungs
    assert not (mask & gap).any()


def test_real_chest_ct_nodule_is_inside_the_lungs(real_chest_ct, real_nodule_label):
    volume = load_volume(real_chest_ct)
    mask = extract_lungs(volume)
    nodule = sitk.GetArrayFromImage(sitk.ReadImage(str(real_nodule_label))) > 0
    assert mask.shape == volume.shape_zyx
    assert mask[nodule].all()
    lung_ml = mask.sum() * volume.voxel_volume_ml
    assert 1500 < lung_ml < 5000  # upper thorax of an adult
    # both lungs, on both sides of the midline
    xs = np.argwhere(mask)[:, 2]
    assert (xs < 200).any() and (xs > 312).any()


def test_lungs_cli_writes_mask_on_input_grid(tmp_path, real_chest_ct, capsys):
    out = tmp_path / "lungs.nii.gz"
    assert main(["lungs", str(real_chest_ct), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mask"] == str(out)
    written = sitk.ReadImage(str(out))
    source = sitk.ReadImage(str(real_chest_ct))
    assert written.GetSize() == source.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing())
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin())
    volume_ml = sitk.GetArrayFromImage(written).sum() * np.prod(written.GetSpacing()) / 1000
    assert result["lung_volume_ml"] == round(volume_ml, 1)


def test_no_lungs_is_a_clear_error(tmp_path, capsys):
    image = sitk.GetImageFromArray(np.full((10, 64, 64), 40, np.int16))
    sitk.WriteImage(image, str(tmp_path / "soft_tissue.nrrd"))
    assert main(["lungs", str(tmp_path / "soft_tissue.nrrd"), "--out", str(tmp_path / "m.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "soft_tissue.nrrd" in err[0] and "no air inside the body" in err[0]


def test_synthetic_covid_case_keeps_subpleural_lesions():
    from ctscreen.evaluation.metrics import dice
    from ctscreen.imaging.resample import resample_mask, resample_volume
    from ctscreen.imaging.synth import case_grid, choose_sites, make_case, render_case
    from ctscreen.imaging.volume import CTVolume

    sites = choose_sites(0, 3)
    spec = next(s for s in (make_case(0, i, sites) for i in range(20)) if s.subtype == "covid")
    grid = case_grid(spec, "small")
    rendered = render_case(spec, grid)
    volume = CTVolume(rendered.hu, grid.spacing_zyx, grid.origin_xyz)
    working = resample_volume(volume, (2.5, 1.0, 1.0))
    found = extract_lungs(working).astype(bool)
    lungs = resample_mask(rendered.lung_mask, volume, (2.5, 1.0, 1.0)).astype(bool)
    lesions = resample_mask(rendered.lesion_mask, volume, (2.5, 1.0, 1.0)).astype(bool)
    assert lesions.sum() > 1000
    assert found[lesions].mean() > 0.9
    assert dice(found, lungs) > 0.93


def _blobs(seed: int) -> np.ndarray:
    """Random smooth blobs with pockets open to the border, the shapes lungs make, and a hollow box."""
    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random((12, 40, 48)), 1.5) > 0.5
    mask[3:9, 10:20, 10:20] = True
    mask[4:8, 12:18, 12:18] = False
    return mask


@pytest.mark.parametrize("structure", [None, IN_PLANE], ids=["3d", "in-plane"])
@pytest.mark.parametrize("seed", range(4))
def test_fill_holes_is_scipys(structure, seed):
    mask = _blobs(seed)
    assert (fill_holes(mask, structure) == ndi.binary_fill_holes(mask, structure=structure)).all()
    assert fill_holes(mask, structure)[5, 15, 15] and not mask[5, 15, 15]  # the box's inside is filled


@pytest.mark.parametrize("seed", range(4))
def test_convex_hull_holds_every_pixel_within_half_a_pixel_of_the_facets(seed):
    for section in _blobs(seed):
        if section.sum() < 3:
            continue
        points = np.argwhere(section)
        equations = ConvexHull(points).equations
        grid = np.argwhere(np.ones_like(section))
        inside = np.all(grid @ equations[:, :2].T + equations[:, 2] <= 0.5, axis=1).reshape(section.shape)
        assert (_convex_hull(section) == (inside | section)).all()
