"""Screening one study, the function every edge site runs: COVID-19 probability, the call at the
bundle's threshold, the lesion mask on the study's own grid, lesion and lung volumes, and a picture
of the slices with the largest lesion burden for the physician to confirm."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctscreen.imaging.preprocess import preprocess
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.resample import resample_mask_like
from ctscreen.imaging.volume import CTVolume, write_mask
from ctscreen.inference.bundle import ModelBundle
from ctscreen.inference.pair import lesion_mask, run_pair
from ctscreen.inference.predictor import PairOutput, PairPredictor
from ctscreen.models.segmentation import check_window


class LocalPair:
    """The bundle's pair in this process. ``window_zyx``: the sliding window (default: the training
    patch). A smaller one bounds memory — the paper-size pair fits 8 GB on a CPU with two
    48 x 160 x 224 windows at overlap 0.1 — though networks that normalise per instance give
    slightly different maps on other windows."""

    def __init__(self, bundle: ModelBundle, backend: str = "torch", window_zyx: tuple[int, int, int] | None = None, overlap: float = 0.25):
        self.window = check_window(window_zyx or bundle.segmentation["patch_zyx"])
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap {overlap}: give a fraction in [0, 1)")
        self.overlap = overlap
        self.input_zyx = tuple(bundle.classification["input_zyx"])
        self.segmenter, self.classifier = bundle.predictors(backend)
        self.lung_region = bundle.lung_region(backend)
        self.served_by = {"backend": backend, "window_zyx": list(self.window), "overlap": overlap}

    def __call__(self, image: np.ndarray, lung_mask: np.ndarray) -> PairOutput:
        return run_pair(self.segmenter, self.classifier, image, lung_mask, self.window, self.input_zyx, self.overlap)


@dataclass
class Screening:
    """One study's result on the study's own grid: what the files, the DICOM results and the
    site's pages are made from."""

    volume: CTVolume
    lesions: np.ndarray  # uint8 (z, y, x), the volume's grid
    lungs: np.ndarray
    covid_probability: float
    threshold: float
    timings_s: dict[str, float]

    @property
    def positive(self) -> bool:
        return self.covid_probability >= self.threshold

    @property
    def lesion_volume_ml(self) -> float:
        return round(float(self.lesions.sum()) * self.volume.voxel_volume_ml, 2)

    @property
    def lung_volume_ml(self) -> float:
        return round(float(self.lungs.sum()) * self.volume.voxel_volume_ml, 1)


def screen_volume(volume: CTVolume, bundle: ModelBundle, predictor: PairPredictor) -> Screening:
    """Preprocessing with the bundle's parameters (its lungs found where the predictor runs the
    lung-region network), the pair, and the lesion rule, back on the volume's grid; each stage timed."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    case = preprocess(volume, bundle.preprocessing, lung_region=predictor.lung_region)
    timings["preprocess"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    output = predictor(case.image, case.lung_mask)
    timings["infer"] = round(time.perf_counter() - clock, 3)
    timings.update(output.timings_s)
    clock = time.perf_counter()
    lesions = resample_mask_like(case.uncrop(lesion_mask(output.probability_map, case.lung_mask).astype(np.uint8)), case.resampled, volume)
    lungs = resample_mask_like(case.uncrop(case.lung_mask), case.resampled, volume)
    timings["postprocess"] = round(time.perf_counter() - clock, 3)
    return Screening(volume, lesions, lungs, float(output.covid_probability), bundle.threshold, timings)


def screen_study(path: str | Path, bundle: ModelBundle, out_dir: str | Path, backend: str = "torch", allow_gaps: bool = False,
                 window_zyx: tuple[int, int, int] | None = None, overlap: float = 0.25, predictor: PairPredictor | None = None) -> dict:
    """Without ``predictor`` the bundle runs here on ``backend`` with ``window_zyx`` and ``overlap``
    (``LocalPair``); with one the pair runs where it says (a Triton server, say)."""
    out_dir = Path(out_dir)
    clock = time.perf_counter()
    volume = load_volume(path, allow_gaps=allow_gaps)
    timings = {"load": round(time.perf_counter() - clock, 3)}
    clock = time.perf_counter()
    predictor = predictor or LocalPair(bundle, backend, window_zyx, overlap)
    timings["load_models"] = round(time.perf_counter() - clock, 3)
    screening = screen_volume(volume, bundle, predictor)
    timings.update(screening.timings_s)

    clock = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    lesion_path = write_mask(volume, screening.lesions, out_dir / "lesion_mask.nii.gz")
    lung_path = write_mask(volume, screening.lungs, out_dir / "lung_mask.nii.gz")
    overlay = draw_overlay(volume, screening.lesions, screening.lungs, screening.covid_probability, bundle, out_dir / "overlay.png")
    timings["write_results"] = round(time.perf_counter() - clock, 3)
    nested = set(timings) - {"load", "load_models", "preprocess", "infer", "postprocess", "write_results"}  # parts of infer
    timings["total"] = round(sum(v for k, v in timings.items() if k not in nested), 3)
    return {
        "covid_probability": round(screening.covid_probability, 6),
        "positive": screening.positive,
        "threshold": bundle.threshold,
        "lesion_volume_ml": screening.lesion_volume_ml,
        "lung_volume_ml": screening.lung_volume_ml,
        "lung_region": "classical" if bundle.lungs is None else "network",  # how the lungs were found
        "lesion_mask": str(lesion_path),
        "lung_mask": str(lung_path),
        "overlay_png": str(overlay),
        "model": {"name": bundle.name, "path": str(bundle.root), **predictor.served_by, **bundle.provenance},
        "timings_s": timings,
    }


def key_slices(lesions: np.ndarray, count: int = 3) -> list[int]:
    """The slices with the largest lesion burden, in order along z (the middle ones when there is none)."""
    burden = lesions.sum(axis=(1, 2))
    chosen = np.argsort(burden, kind="stable")[::-1][:count] if burden.any() else np.linspace(0, len(burden) - 1, count + 2)[1:-1].astype(int)
    return sorted({int(z) for z in chosen})


def draw_overlay(volume: CTVolume, lesion_mask: np.ndarray, lung_mask: np.ndarray, probability: float, bundle: ModelBundle,
                 path: Path, slices: int = 3) -> Path:
    """The slices with the largest lesion burden (or the middle ones), lesions in red, lungs in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    burden = lesion_mask.sum(axis=(1, 2))
    chosen = key_slices(lesion_mask, slices)
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4.4), squeeze=False)
    for ax, z in zip(axes[0], chosen):
        ax.imshow(volume.hu[z], cmap="gray", vmin=-1350, vmax=150)
        ax.contour(lung_mask[z], levels=[0.5], colors="lime", linewidths=0.6)
        if lesion_mask[z].any():
            ax.contour(lesion_mask[z], levels=[0.5], colors="red", linewidths=0.9)
        ax.set_title(f"slice {z}: lesion {burden[z] * volume.voxel_volume_ml:.1f} ml", fontsize=8)
        ax.axis("off")
    call = "POSITIVE" if probability >= bundle.threshold else "negative"
    fig.suptitle(f"COVID-19 probability {probability:.4f} ({call} at threshold {bundle.threshold:.4f}) — {bundle.name}; "
                 "for the physician to confirm", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
