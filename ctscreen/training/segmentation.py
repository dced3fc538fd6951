"""Lesion-segmentation training: class-balanced patches around lesions, the paper's augmentation,
Dice + cross-entropy (weighted over U-Net++'s deep-supervision heads), validation Dice by sliding window."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from ctscreen.evaluation.metrics import dice
from ctscreen.inference.pair import lesion_mask
from ctscreen.inference.sliding_window import lesion_probability
from ctscreen.models import build_model
from ctscreen.models.segmentation import PATCH_ZYX
from ctscreen.training.cases import CachedCase
from ctscreen.training.data import epoch_batches, lesion_patches
from ctscreen.training.config import SegmentationConfig
from ctscreen.training.loop import EpochRecord, TrainingResult, fit


def patch_size(config: SegmentationConfig) -> tuple[int, int, int]:
    return tuple(config.patch_zyx) if config.patch_zyx else PATCH_ZYX[config.profile]


def deep_supervision_loss(weights: list[float]):
    # Dice over the whole batch (as nnU-Net does): a lesion-free patch alone would reward predicting nothing
    base = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    def loss(outputs, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return base(outputs, target)
        used = weights[: len(outputs)]
        return sum(w * base(o, target) for w, o in zip(used, outputs)) / sum(used)

    return loss


def patch_batches(cases: list[CachedCase], config: SegmentationConfig, seed: int):
    """Per epoch, the cases streamed through ``lesion_patches`` (``samples_per_case`` patches each,
    ``positive_fraction`` of them on lesions, augmented) and regrouped into batches."""
    patch = patch_size(config)
    return epoch_batches(cases, lambda ordered: lesion_patches(ordered, patch, config.samples_per_case, config.positive_fraction),
                         seed, config.optimiser.data_workers, config.optimiser.batch_size)


def validation_dice(cases: list[CachedCase], patch: tuple[int, int, int]):
    """Mean lesion Dice over the annotated validation cases, one case in memory at a time."""
    def validate(model) -> dict:
        scores = []
        for cached in cases:
            case = cached.load()
            if case.lesion_mask.any():
                scores.append(dice(lesion_mask(lesion_probability(model, case.image, patch), case.lung_mask), case.lesion_mask))
        return {"dice": float(np.mean(scores))} if scores else {}

    return validate


def train_segmentation(name: str, train: list[CachedCase], validation: list[CachedCase], config: SegmentationConfig,
                       out_dir: str | Path, seed: int = 0, progress: bool = True, peers: Sequence[Sequence[EpochRecord]] = ()) -> TrainingResult:
    set_determinism(seed)
    model = build_model(name, config.profile)
    return fit(
        model,
        deep_supervision_loss(config.deep_supervision_weights),
        patch_batches(train, config, seed),
        config.optimiser,
        Path(out_dir) / name,
        validate=validation_dice(validation, patch_size(config)),
        metric="dice",
        validate_every=config.validate_every,
        description=f"seg {name}",
        progress=progress,
        peers=peers,
    )
