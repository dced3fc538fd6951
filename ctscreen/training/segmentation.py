"""Lesion-segmentation training: class-balanced patches around lesions, the paper's augmentation,
Dice + cross-entropy (weighted over U-Net++'s deep-supervision heads), validation Dice by sliding window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from ctscreen.evaluation.metrics import mean_lesion_dice
from ctscreen.imaging.augment import training_augmentation
from ctscreen.inference.pair import lesion_mask
from ctscreen.inference.sliding_window import lesion_probability
from ctscreen.models import build_model
from ctscreen.models.segmentation import PATCH_ZYX
from ctscreen.training.cases import PreparedCase
from ctscreen.training.config import SegmentationConfig
from ctscreen.training.loop import TrainingResult, fit


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


def _padded(array: np.ndarray, patch: tuple[int, int, int]) -> np.ndarray:
    pad = [(0, max(0, p - n)) for n, p in zip(array.shape, patch)]
    return np.pad(array, pad) if any(b for _, b in pad) else array


def patch_sampler(cases: list[PreparedCase], config: SegmentationConfig, seed: int):
    """Per epoch, ``samples_per_case`` patches per case: ``positive_fraction`` centred on lesion voxels
    (class balance), the rest anywhere in the lung crop; then the paper's augmentation."""
    patch = np.array(patch_size(config))
    volumes = [(_padded(c.image, tuple(patch)), _padded(c.lesion_mask, tuple(patch))) for c in cases]
    lesion_voxels = [np.argwhere(label) for _, label in volumes]  # computed once, not per patch
    augment = training_augmentation(tuple(patch))
    batch_size = config.optimiser.batch_size

    def crop(index: int, rng: np.random.Generator) -> dict:
        image, label = volumes[index]
        shape = np.array(image.shape)
        voxels = lesion_voxels[index]
        centre = voxels[rng.integers(len(voxels))] if len(voxels) and rng.random() < config.positive_fraction else rng.integers(0, shape)
        start = np.clip(centre - patch // 2, 0, shape - patch)
        box = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch))
        return {"image": image[box][None], "label": label[box][None].astype(np.float32)}

    def batches(epoch: int, rank: int, world: int):
        rng = np.random.default_rng([seed, epoch])
        augment.set_random_state(seed + 1000 + epoch)
        order = rng.permutation(len(cases))[rank::world]
        images, labels = [], []
        for index in order:
            for _ in range(config.samples_per_case):
                out = augment(crop(index, rng))
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
        annotated = [c for c in cases if c.lesion_mask.any()]
        predictions = [lesion_mask(lesion_probability(model, c.image, patch), c.lung_mask) for c in annotated]
        value = mean_lesion_dice(predictions, [c.lesion_mask for c in annotated])
        return {"dice": value} if value is not None else {}

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
        validate_every=config.validate_every,
        description=f"seg {name}",
        progress=progress,
    )
