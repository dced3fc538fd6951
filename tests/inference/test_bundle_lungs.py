"""A bundle that finds the lungs with its lung-region network: it carries the network (weights, ONNX
graph, spec), its preprocessing names the weights, screening uses it on either backend, and a bundle
whose network is not the one its preprocessing names is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctscreen.digests import file_sha256
from ctscreen.errors import InputError
from ctscreen.imaging.preprocess import PreprocessingParameters, preprocess
from ctscreen.imaging.resample import resample_mask_like
from ctscreen.imaging.synth import case_grid, choose_sites, make_case, render_case
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.bundle import load_bundle, save_bundle
from ctscreen.inference.lung_region import load_lung_region
from ctscreen.inference.screen import LocalPair, screen_volume
from ctscreen.models import build_model
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.models.segmentation import PATCH_ZYX


def _save(root, lungs, preprocessing):
    torch.manual_seed(0)
    return save_bundle(root, build_model("fcn8s", "tiny"), {"name": "fcn8s", "profile": "tiny", "patch_zyx": list(PATCH_ZYX["tiny"])},
                       build_model("resnet50", "tiny"), {"name": "resnet50", "profile": "tiny", "input_zyx": list(INPUT_ZYX["tiny"])},
                       preprocessing, threshold=0.5, metrics={}, lungs=lungs)


@pytest.fixture(scope="module")
def lung_bundle(tiny_lung_model, tmp_path_factory):
    preprocessing = PreprocessingParameters(lung_model=file_sha256(tiny_lung_model / "lung_region.pt"))
    return load_bundle(_save(tmp_path_factory.mktemp("lung-bundle") / "bundle", tiny_lung_model, preprocessing).root)


def _synthetic_volume(index: int = 0) -> CTVolume:
    spec = make_case(11, index, choose_sites(11, 1))
    grid = case_grid(spec, "tiny")
    return CTVolume(render_case(spec, grid).hu, grid.spacing_zyx, grid.origin_xyz)


def test_the_bundle_carries_its_lung_region_network(lung_bundle, tiny_lung_model):
    assert (lung_bundle.lungs / "lung_region.pt").read_bytes() == (tiny_lung_model / "lung_region.pt").read_bytes()
    assert {p.name for p in lung_bundle.lungs.iterdir()} == {"lung_region.pt", "lung_region.onnx", "spec.json"}
    for backend in ("torch", "onnx"):
        assert lung_bundle.lung_region(backend).digest == lung_bundle.preprocessing.lung_model


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_screening_finds_the_lungs_with_the_bundle_s_network(lung_bundle, backend):
    volume = _synthetic_volume()
    screening = screen_volume(volume, lung_bundle, LocalPair(lung_bundle, backend))
    expected = preprocess(volume, lung_bundle.preprocessing, lung_region=lung_bundle.lung_region(backend))
    np.testing.assert_array_equal(screening.lungs, resample_mask_like(expected.uncrop(expected.lung_mask), expected.resampled, volume))
    classical = preprocess(volume, PreprocessingParameters())
    assert screening.lungs.any() and not np.array_equal(expected.lung_mask, classical.lung_mask)


def test_preprocessing_that_names_a_network_refuses_to_run_without_it(lung_bundle, tiny_lung_model):
    volume = _synthetic_volume()
    with pytest.raises(ValueError, match="lung-region model"):
        preprocess(volume, lung_bundle.preprocessing)
    with pytest.raises(ValueError, match="lung-region model"):
        preprocess(volume, PreprocessingParameters(lung_model="0" * 64), lung_region=load_lung_region(tiny_lung_model))


def test_a_network_other_than_the_one_the_preprocessing_names_is_refused(lung_bundle, tiny_lung_model, tmp_path):
    with pytest.raises(ValueError, match="give both or neither"):
        _save(tmp_path / "a", tiny_lung_model, PreprocessingParameters())
    with pytest.raises(ValueError, match="is not the lung-region model"):
        _save(tmp_path / "b", tiny_lung_model, PreprocessingParameters(lung_model="0" * 64))
    import shutil

    copy = shutil.copytree(lung_bundle.root, tmp_path / "copy")
    weights = copy / "lungs" / "lung_region.pt"
    state = torch.load(weights, weights_only=True)
    next(iter(state.values())).add_(1.0)
    torch.save(state, weights)
    with pytest.raises(InputError, match="is not the lung-region model"):
        load_bundle(copy)
    weights.unlink()
    with pytest.raises(InputError, match="missing from the bundle"):
        load_bundle(copy)


def test_lungs_cli_finds_the_region_with_a_trained_model_or_classically(tiny_lung_model, tmp_path):
    import json
    import subprocess
    import sys

    import SimpleITK as sitk

    volume = _synthetic_volume()
    image = tmp_path / "study.nii.gz"
    sitk.WriteImage(volume.to_sitk(volume.hu), str(image))
    found = {}
    for method, extra in (("network", ["--model", str(tiny_lung_model)]), ("classical", [])):
        result = subprocess.run([sys.executable, "-m", "ctscreen.cli", "lungs", str(image), "--out", str(tmp_path / f"{method}.nii.gz"),
                                 *extra, "--json"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        found[method] = json.loads(result.stdout)
    assert found["network"]["method"].startswith("lung-region model") and found["classical"]["method"] == "classical extraction"
    expected = load_lung_region(tiny_lung_model)(volume)
    written = sitk.GetArrayFromImage(sitk.ReadImage(found["network"]["mask"]))
    np.testing.assert_array_equal(written, expected)
    assert found["network"]["lung_volume_ml"] == round(float(expected.sum()) * volume.voxel_volume_ml, 1)
