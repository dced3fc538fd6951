"""Lesion-segmentation training: class-balanced patches around lesions, the paper's augmentation,
Dice + cross-entropy (weighted over U-Net++'s deep-supervision heads), validation Dice by sliding window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.transforms import Compose, RandCropByPosNegLabeld, SpatialPadd
from monai.utils import set_determinism

from ctscreen.evaluation.metrics import dice
from ctscreen.imaging.augment import training_augmentation
from ctscreen.inference.sliding_window import lesion_probability
from ctscreen.models import build_model
from ctscreen.models.segmentation import PATCH_ZYX
from ctscreen.training.cases import PreparedCase
from ctscreen.training.config import SegmentationConfig
from ctscreen.training.loop import TrainingResult, fit


def patch_size(config: SegmentationConfig) -> tuple[int, int, int]:
    return tuple(config.patch_zyx) if config.patch_zyx else PATCH_ZYX[config.profile]


def deep_supervision_loss(weights: list[float]):
    base = DiceCELoss(to_onehot_y=True, softmax=True)

    def loss(outputs, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return base(outputs, target)
        used = weights[: len(outputs)]
        return sum(w * base(o, target) for w, o in zip(used, outputs)) / sum(used)

    return loss


def patch_sampler(cases: list[PreparedCase], config: SegmentationConfig, seed: int):
    """Per epoch, ``samples_per_case`` patches per case: ``positive_fraction`` centred on lesion voxels."""
    patch = patch_size(config)
    sampling = Compose([
        SpatialPadd(keys=["image", "label"], spatial_size=patch),
        RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=patch,
                               pos=config.positive_fraction, neg=1 - config.positive_fraction,
                               num_samples=config.samples_per_case, allow_smaller=False),
    ])
    augment = training_augmentation(patch)
    batch_size = config.optimiser.batch_size

    def batches(epoch: int, rank: int, world: int):
        sampling.set_random_state(seed + epoch)
        augment.set_random_state(seed + 1000 + epoch)
        order = np.random.default_rng(seed + epoch).permutation(len(cases))[rank::world]
        images, labels = [], []
        for index in order:
            case = cases[index]
            sample = {"image": case.image[None], "label": case.lesion_mask[None].astype(np.float32)}
            for patch_sample in sampling(sample):
                out = augment(patch_sample)
                images.append(torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32))
                labels.append(torch.as_tensor(np.asarray(out["label"]), dtype=torch.float32))
                if len(images) == batch_size:
                    yield torch.stack(images), torch.stack(labels)
                    images, labels = [], []
        if len(images) > 1 or (images and batch_size == 1):  # batch norm cannot train on a lone sample
            yield torch.stack(images), torch.stack(labels)

    return batches


def validation_dice(cases: list[PreparedCase], patch: tuple[int, int, int]):
    def validate(model) -> dict:
        scores = [dice(lesion_probability(model, c.image, patch) > 0.5, c.lesion_mask) for c in cases]
        return {"dice": float(np.mean(scores))} if scores else {}

    return validate


def train_segmentation(name: str, train: list[PreparedCase], validation: list[PreparedCase], config: SegmentationConfig,
                       out_dir: str | Path, seed: int = 0, progress: bool = True) -> TrainingResult:
    set_determinism(seed)
    model = build_model(name, config.profile)
    return fit(
        model,
        deep_supervision_loss(config.deep_supervision_weights),
        patch_sampler(train, config, seed),
        config.optimiser,
        Path(out_dir) / name,
        validate=validation_dice(validation, patch_size(config)),
        metric="dice",
        description=f"seg {name}",
        progress=progress,
    )
