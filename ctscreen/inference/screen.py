"""Screening one study, the function every edge site runs: COVID-19 probability, the call at the
bundle's threshold, the lesion mask on the study's own grid, lesion and lung volumes, and a picture
of the slices with the largest lesion burden for the physician to confirm."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ctscreen.imaging.preprocess import preprocess
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.resample import resample_mask_like
from ctscreen.imaging.volume import CTVolume, write_mask
from ctscreen.inference.bundle import ModelBundle
from ctscreen.inference.sliding_window import lesion_probability, onnx_predictor
from ctscreen.models.segmentation import check_window
from ctscreen.training.classification import classifier_input

BACKENDS = ("torch", "onnx")


def screen_study(path: str | Path, bundle: ModelBundle, out_dir: str | Path, backend: str = "torch", allow_gaps: bool = False,
                 window_zyx: tuple[int, int, int] | None = None, overlap: float = 0.25) -> dict:
    """``window_zyx``: the sliding window (default: the training patch). A smaller one bounds memory —
    the paper-size pair fits 8 GB on a CPU with two 48 x 160 x 224 windows at overlap 0.1 — though
    networks that normalise per instance give slightly different maps on other windows."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    window = check_window(window_zyx or bundle.segmentation["patch_zyx"])
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap {overlap}: give a fraction in [0, 1)")
    out_dir = Path(out_dir)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    volume = load_volume(path, allow_gaps=allow_gaps)
    lap("load")
    if backend == "onnx":
        segmenter, classifier = onnx_predictor(bundle.root / "segmentation.onnx"), onnx_predictor(bundle.root / "classification.onnx")
    else:
        segmenter, classifier = bundle.networks()
    lap("load_models")
    case = preprocess(volume, bundle.preprocessing)
    lap("preprocess")
    probability_map = lesion_probability(segmenter, case.image, window, overlap=overlap, batch_size=1)
    lap("segment")
    inputs = classifier_input(case.image, probability_map, case.lung_mask, tuple(bundle.classification["input_zyx"]))[None]
    with torch.no_grad():
        logit = classifier(inputs)
    probability = float(torch.sigmoid(logit.float()).reshape(-1)[0])
    lap("classify")

    lesions = (probability_map > 0.5) & (case.lung_mask > 0)
    lesion_mask = resample_mask_like(case.uncrop(lesions.astype(np.uint8)), case.resampled, volume)
    lung_mask = resample_mask_like(case.uncrop(case.lung_mask), case.resampled, volume)
    out_dir.mkdir(parents=True, exist_ok=True)
    lesion_path = write_mask(volume, lesion_mask, out_dir / "lesion_mask.nii.gz")
    lung_path = write_mask(volume, lung_mask, out_dir / "lung_mask.nii.gz")
    overlay = draw_overlay(volume, lesion_mask, lung_mask, probability, bundle, out_dir / "overlay.png")
    lap("write_results")
    timings["total"] = round(sum(timings.values()), 3)
    return {
        "covid_probability": round(probability, 6),
        "positive": probability >= bundle.threshold,
        "threshold": bundle.threshold,
        "lesion_volume_ml": round(float(lesion_mask.sum()) * volume.voxel_volume_ml, 2),
        "lung_volume_ml": round(float(lung_mask.sum()) * volume.voxel_volume_ml, 1),
        "lesion_mask": str(lesion_path),
        "lung_mask": str(lung_path),
        "overlay_png": str(overlay),
        "model": {"name": bundle.name, "path": str(bundle.root), "backend": backend, "window_zyx": list(window), "overlap": overlap,
                  **bundle.provenance},
        "timings_s": timings,
    }


def draw_overlay(volume: CTVolume, lesion_mask: np.ndarray, lung_mask: np.ndarray, probability: float, bundle: ModelBundle,
                 path: Path, slices: int = 3) -> Path:
    """The slices with the largest lesion burden (or the middle ones), lesions in red, lungs in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    burden = lesion_mask.sum(axis=(1, 2))
    chosen = np.argsort(burden)[::-1][:slices] if burden.any() else np.linspace(0, len(burden) - 1, slices + 2)[1:-1].astype(int)
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4.4), squeeze=False)
    for ax, z in zip(axes[0], sorted(chosen)):
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
