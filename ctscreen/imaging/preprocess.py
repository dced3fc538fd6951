"""The paper's preprocessing as one function, shared by training, evaluation and serving.

Steps (Jin et al. 2020, Methods): resample to 1 x 1 x 2.5 mm (x, y, z), linear for images and
nearest for masks; a HU window per model; lung extraction and crop to the lungs; scale to [0, 1].
Augmentation (random flip, pan and zoom) is training-only and lives in ``ctscreen.imaging.augment``.
What was validated is what runs at the edge, so every consumer calls ``preprocess``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ctscreen.imaging.lungs import LungExtractionParameters, bounding_box, extract_lungs
from ctscreen.imaging.resample import resample_mask, resample_volume
from ctscreen.imaging.volume import CTVolume, write_mask

TARGET_SPACING_ZYX = (2.5, 1.0, 1.0)  # the paper's (1, 1, 2.5) mm in (x, y, z)
HU_WINDOWS = {
    "lung-region": (-150.0, 350.0),  # input of the lung-region model
    "lesion": (-1024.0, 350.0),  # lesion segmentation and classification models
}


@dataclass(frozen=True)
class PreprocessingParameters:
    """Everything that decides the tensors a model sees; stored in every model bundle."""

    spacing_zyx: tuple[float, float, float] = TARGET_SPACING_ZYX
    window: str = "lesion"
    crop_margin_mm: tuple[float, float, float] = (5.0, 10.0, 10.0)
    mask_outside_lungs: bool = True  # voxels outside the (margin-dilated) lung region become 0
    lungs: LungExtractionParameters = field(default_factory=LungExtractionParameters)
    # SHA-256 of the lung-region network's weights that finds the lungs; None: the classical extraction.
    # Part of the parameters, so a cache entry or a bundle names the lungs it was made with.
    lung_model: str | None = None

    def __post_init__(self):
        if self.window not in HU_WINDOWS:
            raise ValueError(f"unknown HU window {self.window!r}; choose from {sorted(HU_WINDOWS)}")
        if len(self.spacing_zyx) != 3 or not all(s > 0 for s in self.spacing_zyx):
            raise ValueError(f"spacing_zyx must be three positive sizes in mm (z, y, x), got {list(self.spacing_zyx)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessingParameters":
        data = dict(data)
        data["lungs"] = LungExtractionParameters(**data.get("lungs", {}))
        for key in ("spacing_zyx", "crop_margin_mm"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass
class PreprocessedCase:
    """Model-ready arrays on the cropped working grid, and the geometry to map results back."""

    image: np.ndarray  # float32 in [0, 1], (z, y, x)
    lung_mask: np.ndarray  # uint8
    lesion_mask: np.ndarray | None
    crop: tuple[slice, slice, slice]  # the lung box inside the resampled volume
    resampled: CTVolume  # the whole study on the working grid (HU)
    parameters: PreprocessingParameters

    @property
    def grid(self) -> CTVolume:
        """The cropped working grid as a volume, for writing or resampling masks."""
        start = np.array([s.start for s in self.crop], float)
        origin = np.asarray(self.resampled.origin) + self.resampled.direction @ (start[::-1] * np.asarray(self.resampled.spacing_zyx)[::-1])
        return CTVolume(self.image, self.resampled.spacing_zyx, tuple(origin), self.resampled.direction)

    def uncrop(self, array: np.ndarray, fill=0) -> np.ndarray:
        """An array on the cropped grid placed back into the whole resampled volume."""
        out = np.full(self.resampled.shape_zyx, fill, dtype=array.dtype)
        out[self.crop] = array
        return out


class LungRegion(Protocol):
    """A trained lung-region step (``ctscreen.inference.lung_region.LungRegionNetwork``): a study in,
    its lung-region mask on the same grid out."""

    digest: str  # what ``PreprocessingParameters.lung_model`` names

    def __call__(self, volume: CTVolume) -> np.ndarray: ...


def apply_window(hu: np.ndarray, window: str | tuple[float, float]) -> np.ndarray:
    """Clip HU to the window and scale it to [0, 1] (float32)."""
    low, high = HU_WINDOWS[window] if isinstance(window, str) else window
    out = np.clip(hu.astype(np.float32, copy=False), low, high)
    out -= low
    out /= high - low
    return out


def lung_bounding_box(lung_mask: np.ndarray, spacing_zyx, margin_mm) -> tuple[slice, slice, slice]:
    return bounding_box(lung_mask, np.ceil(np.asarray(margin_mm) / np.asarray(spacing_zyx)).astype(int))


def preprocess(
    volume: CTVolume,
    params: PreprocessingParameters = PreprocessingParameters(),
    lesion_mask: np.ndarray | None = None,
    lung_mask: np.ndarray | None = None,
    lung_region: LungRegion | None = None,
) -> PreprocessedCase:
    """Resample, find and crop the lungs, window and scale one study (masks on ``volume``'s grid).

    The lungs: ``lung_mask`` where given, else the network ``params.lung_model`` names (passed as
    ``lung_region``), else the classical extraction."""
    resampled = resample_volume(volume, params.spacing_zyx)
    if lung_mask is None and params.lung_model is not None:
        if lung_region is None or lung_region.digest != params.lung_model:
            given = "none" if lung_region is None else lung_region.digest[:12]
            raise ValueError(f"these parameters find the lungs with lung-region model {params.lung_model[:12]}; given: {given}")
        lungs = lung_region(resampled)
    elif lung_mask is None:
        lungs = extract_lungs(resampled, params.lungs)
    else:
        lungs = resample_mask(lung_mask, volume, params.spacing_zyx)
    crop = lung_bounding_box(lungs, params.spacing_zyx, params.crop_margin_mm)
    image = apply_window(resampled.hu[crop], params.window)
    lungs = lungs[crop]
    if params.mask_outside_lungs:
        image[~_dilate_mm(lungs, params.spacing_zyx, params.crop_margin_mm)] = 0.0
    lesions = None if lesion_mask is None else resample_mask(lesion_mask, volume, params.spacing_zyx)[crop]
    return PreprocessedCase(image, lungs, lesions, crop, resampled, params)


def _dilate_mm(mask: np.ndarray, spacing_zyx, margin_mm) -> np.ndarray:
    """The mask grown by an ellipsoid of the margin's semi-axes."""
    scaled = np.asarray(spacing_zyx) / np.asarray(margin_mm)
    return ndi.distance_transform_edt(~mask.astype(bool), sampling=scaled) <= 1.0


def write_preprocessed(case: PreprocessedCase, out_dir: str | Path) -> dict:
    """The model-ready image and masks as NIfTI on the cropped working grid, with the parameters."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = case.grid
    written = {"image": out_dir / "image.nii.gz"}
    sitk.WriteImage(grid.to_sitk(case.image), str(written["image"]), useCompression=True)
    written["lung_mask"] = write_mask(grid, case.lung_mask, out_dir / "lung_mask.nii.gz")
    if case.lesion_mask is not None:
        written["lesion_mask"] = write_mask(grid, case.lesion_mask, out_dir / "lesion_mask.nii.gz")
    written["parameters"] = out_dir / "preprocessing.json"
    written["parameters"].write_text(json.dumps(case.parameters.to_dict(), indent=2))
    return {"shape_zyx": list(case.image.shape), "spacing_zyx": list(grid.spacing_zyx), **{k: str(v) for k, v in written.items()}}
