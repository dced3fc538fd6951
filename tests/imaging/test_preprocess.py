"""The paper's preprocessing, step by step, with its exact parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctscreen.cli import main
from ctscreen.imaging.augment import AugmentationParameters, training_augmentation
from ctscreen.imaging.preprocess import (
    HU_WINDOWS,
    TARGET_SPACING_ZYX,
    PreprocessingParameters,
    apply_window,
    preprocess,
)
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.resample import resample_mask, resample_volume
from ctscreen.imaging.volume import CTVolume
from tests.imaging.chest_phantom import chest_phantom


def test_paper_parameters():
    assert TARGET_SPACING_ZYX == (2.5, 1.0, 1.0)  # (x, y, z) = (1, 1, 2.5) mm
    assert HU_WINDOWS == {"lung-region": (-150.0, 350.0), "lesion": (-1024.0, 350.0)}
    assert PreprocessingParameters().window == "lesion"
    augmentation = AugmentationParameters()
    assert augmentation.flip_prob > 0 and augmentation.pan_fraction > 0 and augmentation.zoom_range[0] < 1 < augmentation.zoom_range[1]


@pytest.mark.parametrize("window, low, high", [("lesion", -1024, 350), ("lung-region", -150, 350)])
def test_window_clips_and_scales_to_unit_range(window, low, high):
    hu = np.array([-3000, low, (low + high) / 2, high, 3000], np.float32)
    np.testing.assert_allclose(apply_window(hu, window), [0, 0, 0.5, 1, 1], atol=1e-6)
    assert apply_window(hu, window).dtype == np.float32


def test_resample_is_linear_for_images_and_nearest_for_masks():
    ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None] * 100, (10, 8, 8)).copy()
    volume = CTVolume(ramp, (5.0, 2.0, 2.0))
    resampled = resample_volume(volume, (2.5, 1.0, 1.0))
    assert resampled.spacing_zyx == (2.5, 1.0, 1.0)
    assert resampled.shape_zyx == (19, 15, 15)
    np.testing.assert_allclose(resampled.hu[1, 4, 4], 50.0, atol=1e-3)  # halfway between slices 0 and 1
    mask = (ramp >= 500).astype(np.uint8) * 3
    resampled_mask = resample_mask(mask, volume, (2.5, 1.0, 1.0))
    assert set(np.unique(resampled_mask)) == {0, 3}


def test_direction_is_honoured():
    volume, _, _ = chest_phantom()
    flipped = CTVolume(volume.hu[:, ::-1, ::-1].copy(), volume.spacing_zyx, direction=np.diag([-1.0, -1.0, 1.0]))
    flipped.origin = (volume.origin[0] + 259, volume.origin[1] + 199, volume.origin[2])
    a, b = preprocess(volume), preprocess(flipped)
    np.testing.assert_allclose(a.image, b.image, atol=1e-5)
    np.testing.assert_array_equal(a.lung_mask, b.lung_mask)


def test_preprocess_crops_to_the_lungs_and_scales():
    volume, lungs, lesion = chest_phantom()
    params = PreprocessingParameters()
    case = preprocess(volume, params, lesion_mask=lesion)
    assert case.image.dtype == np.float32 and case.image.min() >= 0 and case.image.max() <= 1
    # the crop holds every lung voxel with the margin on each side where the volume allows
    found = case.uncrop(case.lung_mask).astype(bool)
    assert 2 * (found & lungs).sum() / (found.sum() + lungs.sum()) > 0.98
    coords = np.argwhere(found)
    margin = np.ceil(np.array(params.crop_margin_mm) / np.array(params.spacing_zyx)).astype(int)
    for axis, s in enumerate(case.crop):
        assert s.start == max(coords[:, axis].min() - margin[axis], 0)
        assert s.stop == min(coords[:, axis].max() + margin[axis] + 1, volume.shape_zyx[axis])
    assert case.lesion_mask.sum() == lesion.sum()
    assert case.image[case.lung_mask == 0].max() <= 1.0
    far = case.uncrop(case.image, fill=-1.0)
    assert (far == -1).sum() == np.prod(volume.shape_zyx) - case.image.size
    # outside the margin-dilated lungs the image is blanked; inside it the HU window applies
    corner = case.image[0, 0, 0]
    assert corner == 0.0
    inside = case.lung_mask.astype(bool) & (case.lesion_mask == 0)
    np.testing.assert_allclose(np.median(case.image[inside]), (-860 + 1024) / 1374, atol=0.02)


def test_preprocess_real_chest_ct_keeps_the_nodule(real_chest_ct, real_nodule_label):
    volume = load_volume(real_chest_ct)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(real_nodule_label)))
    case = preprocess(volume, lesion_mask=label)
    nodule_ml = label.astype(bool).sum() * volume.voxel_volume_ml
    resampled_ml = case.lesion_mask.sum() * np.prod(TARGET_SPACING_ZYX) / 1000
    assert resampled_ml == pytest.approx(nodule_ml, rel=0.15)
    assert case.lung_mask[case.lesion_mask > 0].all()
    assert case.resampled.spacing_zyx == TARGET_SPACING_ZYX


def test_preprocess_cli_writes_model_ready_volumes(tmp_path, real_chest_ct, capsys):
    assert main(["preprocess", str(real_chest_ct), "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    image = sitk.ReadImage(result["image"])
    assert image.GetSpacing() == (1.0, 1.0, 2.5)
    assert list(reversed(image.GetSize())) == result["shape_zyx"]
    assert json.loads((tmp_path / "preprocessing.json").read_text())["window"] == "lesion"
    assert PreprocessingParameters.from_dict(json.loads((tmp_path / "preprocessing.json").read_text())) == PreprocessingParameters()


def test_augmentation_moves_image_and_label_together():
    rng = np.random.default_rng(0)
    image = rng.random((1, 16, 32, 32)).astype(np.float32)
    label = np.zeros((1, 16, 32, 32), np.float32)
    label[:, 4:8, 5:15, 20:28] = 1
    image[label > 0] = 5.0  # the lesion is bright, so it must move with its label
    augment = training_augmentation((16, 32, 32))
    augment.set_random_state(seed=3)
    changed = 0
    for _ in range(8):
        out = augment({"image": torch.from_numpy(image), "label": torch.from_numpy(label)})
        out_label = out["label"].numpy()
        assert set(np.unique(out_label)) <= {0.0, 1.0}  # nearest for labels
        if out_label.any():
            assert out["image"].numpy()[out_label > 0].mean() > 3.0
        changed += not np.array_equal(out_label, label)
    assert changed >= 6
