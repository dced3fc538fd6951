"""COVID-19 classification training on two channels — the lung-cropped CT and the lesion mask
predicted by the chosen segmentation model (the paper's pairing) — resized to the model's input.
Inputs are read from the segmenter's output batch by batch, so memory does not grow with the cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.utils import set_determinism
from torch import nn

from ctscreen.evaluation.classification import auc
from ctscreen.evaluation.evaluator import SegmentedCases, scores
from ctscreen.imaging.augment import training_augmentation
from ctscreen.models import build_model
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.training.config import ClassificationConfig
from ctscreen.training.loop import TrainingResult, fit


def input_size(config: ClassificationConfig) -> tuple[int, int, int]:
    return tuple(config.input_zyx) if config.input_zyx else INPUT_ZYX[config.profile]


def _batches(train: SegmentedCases, config: ClassificationConfig, seed: int):
    batch_size = config.optimiser.batch_size
    augment = training_augmentation(tuple(train.input(0).shape[1:]), label_keys=())
    labels = torch.as_tensor(train.labels, dtype=torch.float32)[:, None]

    def batches(epoch: int, rank: int, world: int):
        augment.set_random_state(seed + epoch)
        order = np.random.default_rng(seed + epoch).permutation(len(train))[rank::world]
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            if len(chosen) == 1 and batch_size > 1:
                continue  # batch norm cannot train on a lone sample
            x = torch.stack([torch.as_tensor(np.asarray(augment({"image": train.input(int(i))})["image"])) for i in chosen]).float()
            yield x, labels[chosen]

    return batches


def validation_auc(validation: SegmentedCases):
    def validate(model) -> dict:
        value = auc(validation.labels, scores(model, validation))
        return {"auc": value} if value is not None else {}

    return validate


def train_classification(name: str, train: SegmentedCases, validation: SegmentedCases, config: ClassificationConfig,
                         out_dir: str | Path, seed: int = 0, progress: bool = True) -> TrainingResult:
    set_determinism(seed)
    model = build_model(name, config.profile)
    positives = float(train.labels.sum())
    pos_weight = torch.tensor([(len(train) - positives) / max(positives, 1.0)])  # class balance
    criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    return fit(
        model,
        lambda logits, target: criterion.to(logits.device)(logits, target),
        _batches(train, config, seed),
        config.optimiser,
        Path(out_dir) / name,
        validate=validation_auc(validation),
        metric="auc",
        description=f"cls {name}",
        progress=progress,
    )
