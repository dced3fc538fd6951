"""A tiny lung-region model the tests share: a coarse grid and a tiny network. A tiny synthetic case
(64 x 64, about 6.5 x 6.5 x 11 mm) is 34 x 52 x 52 voxels on this grid, and one patch sees almost all
of it; fifteen epochs on three cases learn the lungs to a validation Dice above 0.8."""

from __future__ import annotations

from pathlib import Path

TINY_LUNGS = ["profile=tiny", "spacing_zyx=[10, 8, 8]", "patch_zyx=[32, 48, 48]", "samples_per_case=4",
              "optimiser.lr=0.01", "optimiser.epochs=15", "optimiser.data_workers=0", "validate_every=5"]


def train_tiny_lung_model(root: Path) -> Path:
    """Trained on four tiny cases of every kind from two sites; returns the model's folder."""
    from ctscreen.imaging.synth import generate_dataset
    from ctscreen.training.lungs import load_lung_config, train_lung_region

    manifest = generate_dataset(root / "data", cases=4, sites=2, seed=7, profile="tiny", progress=False)
    train_lung_region(manifest, root / "run", load_lung_config(None, TINY_LUNGS), validation_fraction=0.25, progress=False)
    return root / "run" / "lungs"
