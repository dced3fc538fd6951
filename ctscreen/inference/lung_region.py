"""The paper's lung-region model on a CT volume: a segmentation network on a coarse grid in the
[-150, 350] HU window, the one or two largest regions it finds, holes filled, back on the study's grid.

A threshold (``ctscreen.imaging.lungs``) cuts out the pleural lesions screening looks for; a network
trained on lung masks that include them does not have to. The lung region only crops, blanks and
measures, so a coarse grid is enough and keeps a whole study to seconds on a CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import nn

from ctscreen.digests import file_sha256
from ctscreen.errors import InputError
from ctscreen.imaging.lungs import IN_PLANE, LungExtractionParameters, fill_holes
from ctscreen.imaging.preprocess import apply_window
from ctscreen.imaging.resample import resample_mask_like, resample_volume
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.backends import load_network
from ctscreen.inference.sliding_window import Predictor, lesion_probability
from ctscreen.models.segmentation import check_window

WINDOW = "lung-region"
LUNG_PROBABILITY = 0.5
LUNG_SPACING_ZYX = (5.0, 4.0, 4.0)  # mm: a 512 x 512 x 300 study becomes about 70 x 90 x 90 voxels
# Aerated lung and outside air both clip to 0 in the lung-region window, only context tells them
# apart: 96 x 4 mm spans a chest in-plane.
LUNG_WINDOW_ZYX = (32, 96, 96)
SPEC_FILE = "spec.json"
WEIGHTS_FILE = "lung_region.pt"
ONNX_FILE = "lung_region.onnx"  # the graph Triton serves (written into a bundle)


@dataclass(frozen=True)
class LungModelSpec:
    """What a trained lung-region network needs to run as it was validated; stored beside its weights."""

    name: str  # a segmentation model of ``ctscreen.models``
    profile: str
    spacing_zyx: tuple[float, float, float] = LUNG_SPACING_ZYX  # the network's grid
    window_zyx: tuple[int, int, int] = LUNG_WINDOW_ZYX  # its sliding window (and training patch)

    def __post_init__(self):
        if len(self.spacing_zyx) != 3 or not all(s > 0 for s in self.spacing_zyx):
            raise ValueError(f"spacing_zyx must be three positive sizes in mm (z, y, x), got {list(self.spacing_zyx)}")
        object.__setattr__(self, "spacing_zyx", tuple(float(s) for s in self.spacing_zyx))
        object.__setattr__(self, "window_zyx", check_window(self.window_zyx))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LungModelSpec":
        return cls(**data)


def lung_input(volume: CTVolume, spec: LungModelSpec) -> tuple[np.ndarray, CTVolume]:
    """The network's input (float32 in [0, 1]) and its grid: the study on ``spec``'s grid, windowed."""
    grid = resample_volume(volume, spec.spacing_zyx)
    return apply_window(grid.hu, WINDOW), grid


def lung_region(predictor: nn.Module | Predictor, volume: CTVolume, spec: LungModelSpec, overlap: float = 0.25,
                params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """Lung-region mask (uint8, 0/1) on ``volume``'s own grid from a (background, lung) network."""
    image, grid = lung_input(volume, spec)
    return lung_mask_from_probability(lesion_probability(predictor, image, spec.window_zyx, overlap=overlap), grid, volume, params)


def lung_mask_from_probability(probability: np.ndarray, grid: CTVolume, volume: CTVolume,
                               params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """The network's lung probability on ``grid`` (``lung_input``'s) as a lung-region mask on ``volume``'s grid."""
    return resample_mask_like(lung_mask_on_grid(probability, grid, params), grid, volume)


def lung_mask_on_grid(probability: np.ndarray, grid: CTVolume, params: LungExtractionParameters = LungExtractionParameters()) -> np.ndarray:
    """The one or two largest confident regions, outside air left out, holes filled, on the network's grid (uint8).

    Lung and outside air look alike in the network's input, and a network trained on a few cases
    has taken the air around a patient for a lung larger than both; so, as the classical extraction
    keeps only air inside the body, the air around it (``outside_air`` of ``grid``'s HU, below
    ``body_threshold_hu``) is left out first. The second region is the other lung by the classical
    rule (``second_lung_ratio``, ``min_lung_ml``). Holes are filled in 3D, then slice by slice: a
    lesion the network missed but surrounded is lung.
    """
    labels, n = ndi.label((probability > LUNG_PROBABILITY) & ~outside_air(grid.hu, params.body_threshold_hu))
    sizes_ml = np.bincount(labels.ravel(), minlength=n + 1)[1:] * grid.voxel_volume_ml
    order = np.argsort(sizes_ml)[::-1]
    largest = sizes_ml[order[0]] if n else 0.0
    if largest < params.min_lung_ml:
        raise InputError(grid.source or "volume", f"no lung found: the largest region the lung-region model finds is {largest:.1f} ml")
    keep = [order[0] + 1]
    if n > 1 and sizes_ml[order[1]] >= params.second_lung_ratio * sizes_ml[order[0]]:
        keep.append(order[1] + 1)
    return fill_holes(fill_holes(np.isin(labels, keep)), structure=IN_PLANE).astype(np.uint8)


def outside_air(hu: np.ndarray, below_hu: float) -> np.ndarray:
    """Voxels below ``below_hu`` connected within their slice to its sides: the air around the patient.

    The lungs are walled in by the chest on every axial slice (unless the field of view cuts them),
    and slice by slice a gap in a thin chest wall on a coarse grid costs that slice, not the lung.
    The classical extraction's body mask opens the tissue first, which on an 8 mm grid broke chest
    walls and lost whole lungs."""
    labels, _ = ndi.label(hu < below_hu, structure=IN_PLANE)
    sides = np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()])
    return np.isin(labels, np.unique(sides[sides > 0]))


def load_lung_model(directory: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, LungModelSpec]:
    """A trained lung-region network (``WEIGHTS_FILE``) and its spec (``SPEC_FILE``) from ``directory``."""
    directory = Path(directory)
    spec = read_lung_spec(directory)
    return load_network(spec.name, spec.profile, directory / WEIGHTS_FILE, directory / ONNX_FILE, "torch", device), spec


@dataclass(frozen=True)
class LungRegionNetwork:
    """The trained lung-region step as preprocessing takes it (``ctscreen.imaging.preprocess.LungRegion``):
    a network (module, ONNX session or a Triton model), its spec, and the digest of the weights it
    was loaded from, which ``PreprocessingParameters.lung_model`` names."""

    predictor: nn.Module | Predictor
    spec: LungModelSpec
    digest: str
    overlap: float = 0.25
    params: LungExtractionParameters = LungExtractionParameters()

    def __call__(self, volume: CTVolume) -> np.ndarray:
        return lung_region(self.predictor, volume, self.spec, self.overlap, self.params)


def load_lung_region(directory: str | Path, backend: str = "torch") -> LungRegionNetwork:
    """A lung-region model directory (a ``ctscreen train lungs`` output, or a bundle's ``lungs/``) on
    ``backend``: its PyTorch weights, or its ONNX graph under ONNX Runtime."""
    directory = Path(directory)
    spec = read_lung_spec(directory)
    network = load_network(spec.name, spec.profile, directory / WEIGHTS_FILE, directory / ONNX_FILE, backend)
    return LungRegionNetwork(network, spec, lung_model_digest(directory))


def lung_model_digest(directory: str | Path) -> str:
    """SHA-256 of the weights of the lung-region model in ``directory``: what ``PreprocessingParameters.lung_model`` names."""
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(weights, "missing: not a trained lung-region model")
    return file_sha256(weights)


def read_lung_spec(directory: str | Path) -> LungModelSpec:
    """The spec of the lung-region model in ``directory``, its weights checked to be there."""
    directory = Path(directory)
    for name in (SPEC_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise InputError(directory / name, "missing: not a trained lung-region model")
    try:
        return LungModelSpec.from_dict(json.loads((directory / SPEC_FILE).read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InputError(directory / SPEC_FILE, f"invalid lung-region model spec ({exc})") from None
