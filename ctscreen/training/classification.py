"""COVID-19 classification training on two channels — the lung-cropped CT and the lesion mask
predicted by the chosen segmentation model (the paper's pairing) — resized to the model's input.
Inputs are read from the segmenter's output batch by batch, so memory does not grow with the cases."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from monai.utils import set_determinism
from torch import nn

from ctscreen.evaluation.classification import auc
from ctscreen.evaluation.evaluator import SegmentedCases, scores
from ctscreen.models import build_model
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.training.config import ClassificationConfig
from ctscreen.training.data import classifier_samples, epoch_batches
from ctscreen.training.loop import EpochRecord, TrainingResult, fit


def input_size(config: ClassificationConfig) -> tuple[int, int, int]:
    return tuple(config.input_zyx) if config.input_zyx else INPUT_ZYX[config.profile]


def _batches(train: SegmentedCases, config: ClassificationConfig, seed: int):
    return epoch_batches(list(range(len(train))), lambda indices: classifier_samples(train, indices), seed,
                         config.optimiser.data_workers, config.optimiser.batch_size)


def validation_auc(validation: SegmentedCases):
    def validate(model) -> dict:
        value = auc(validation.labels, scores(model, validation))
        return {"auc": value} if value is not None else {}

    return validate


def train_classification(name: str, train: SegmentedCases, validation: SegmentedCases, config: ClassificationConfig,
                         out_dir: str | Path, seed: int = 0, progress: bool = True, peers: Sequence[Sequence[EpochRecord]] = ()) -> TrainingResult:
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
        peers=peers,
    )
