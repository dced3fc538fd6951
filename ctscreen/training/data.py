"""Training data streamed case by case: MONAI datasets over the preprocessing cache (or the
segmenter's classifier inputs), read by a MONAI ``DataLoader`` with worker processes, so memory
holds a few cases at a time however many the dataset has (the paper's 1,136 at 1 x 1 x 2.5 mm fit).

Each epoch's order and every random transform follow from (seed, epoch), with or without workers,
so a resumed run draws the epochs it would have drawn."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from monai.data import DataLoader, Dataset, MetaTensor, list_data_collate
from monai.data.utils import worker_init_fn as monai_worker_init
from monai.transforms import Compose, RandCropByPosNegLabeld, SpatialPadd, Transform

from ctscreen.evaluation.evaluator import SegmentedCases
from ctscreen.imaging.augment import training_augmentation
from ctscreen.training.cases import CachedCase

Batch = tuple[torch.Tensor, torch.Tensor]


class LoadLesionSample(Transform):
    """A cache entry as a channel-first sample: the image and its lesion label."""

    def __call__(self, case: CachedCase) -> dict:
        prepared = case.load()
        return {"image": prepared.image[None], "label": prepared.lesion_mask[None].astype(np.float32)}


def lesion_patches(cases: Sequence[CachedCase], patch_zyx: tuple[int, int, int], samples_per_case: int,
                   positive_fraction: float) -> Dataset:
    """Per case ``samples_per_case`` patches, ``positive_fraction`` of them centred on lesion voxels
    (class balance; a case without lesions gives background patches), then the paper's augmentation."""
    keys = ["image", "label"]
    return Dataset(list(cases), Compose([
        LoadLesionSample(),
        SpatialPadd(keys, spatial_size=patch_zyx),
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=patch_zyx, pos=positive_fraction, neg=1.0 - positive_fraction,
                               num_samples=samples_per_case),
        training_augmentation(tuple(patch_zyx)),
    ]))


class LoadClassifierSample(Transform):
    """The ``index``-th segmented case as a sample: its two-channel classifier input and its label."""

    def __init__(self, segmented: SegmentedCases):
        self.segmented = segmented
        self.labels = segmented.labels

    def __call__(self, index: int) -> dict:
        return {"image": self.segmented.input(index).numpy(), "label": np.array([self.labels[index]], np.float32)}


def classifier_samples(segmented: SegmentedCases, indices: Sequence[int]) -> Dataset:
    """The segmented cases at ``indices``, with the paper's augmentation of the image."""
    shape = tuple(segmented.input(0).shape[1:])
    return Dataset(list(indices), Compose([LoadClassifierSample(segmented), training_augmentation(shape, label_keys=())]))


def epoch_order(count: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's share of the cases in the epoch's shuffled order."""
    return np.random.default_rng([seed, epoch]).permutation(count)[rank::world].tolist()


def epoch_loader(dataset: Dataset, seed: int, epoch: int, workers: int, batch_size: int = 1) -> DataLoader:
    """The dataset in its order (subset it with ``epoch_order`` first), random transforms seeded by
    (seed, epoch) in the main process or in each worker."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, generator=generator,
                      collate_fn=list_data_collate, worker_init_fn=_init_worker)


def _init_worker(worker_id: int) -> None:
    """One thread per loader worker: the training step has the cores, and OpenMP threads spinning
    against it slowed training by an order of magnitude. Then MONAI's seeding of the transforms."""
    torch.set_num_threads(1)
    monai_worker_init(worker_id)


def epoch_batches(items: Sequence, dataset_of, seed: int, workers: int, batch_size: int):
    """``fit``'s batches: per epoch, this rank's share of ``items`` in the epoch's shuffled order,
    made a dataset by ``dataset_of``, streamed by ``epoch_loader`` and regrouped by ``rebatch``."""
    def batches(epoch: int, rank: int, world: int):
        ordered = [items[i] for i in epoch_order(len(items), seed, epoch, rank, world)]
        yield from rebatch(epoch_loader(dataset_of(ordered), seed, epoch, workers), batch_size)

    return batches


def rebatch(samples: Iterable[dict], batch_size: int) -> Iterator[Batch]:
    """Loader outputs (each a case's samples) regrouped into (image, label) batches of ``batch_size``
    samples; a last lone sample is dropped when batches are larger (batch norm cannot train on one)."""
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for sample in samples:
        images.extend(_plain(sample["image"]))
        labels.extend(_plain(sample["label"]))
        while len(images) >= batch_size:
            yield torch.stack(images[:batch_size]), torch.stack(labels[:batch_size])
            images, labels = images[batch_size:], labels[batch_size:]
    if len(images) > 1 or (images and batch_size == 1):
        yield torch.stack(images), torch.stack(labels)


def _plain(value) -> torch.Tensor:
    """A float tensor without MONAI's metadata (the networks and losses need none)."""
    return (value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)).float()
