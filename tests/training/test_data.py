"""The streamed training data: memory that does not grow with the number of cases, reproducible
epochs, and patches that follow the class balance asked for."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from ctscreen.training.cases import prepare_cases
from ctscreen.training.data import epoch_loader, epoch_order, lesion_patches, rebatch

PATCH = (16, 32, 32)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    from ctscreen.imaging.synth import generate_dataset

    root = tmp_path_factory.mktemp("streamed")
    manifest = generate_dataset(root / "data", cases=4, sites=1, seed=2, profile="tiny", progress=False)
    return prepare_cases(manifest, root / "cache", progress=False)


def _dataset_of(cached, count: int):
    """``count`` cases cycling over the distinct ones, each read from the cache when drawn."""
    return [replace(cached[i % len(cached)], case_id=f"case-{i}") for i in range(count)]


def _epoch_peak_bytes(cases) -> int:
    tracemalloc.start()
    try:
        patches = sum(len(images) for images, _ in rebatch(epoch_loader(lesion_patches(cases, PATCH, 2, 0.5), seed=0, epoch=1, workers=0), 2))
        assert patches == 2 * len(cases)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_epoch_s_memory_does_not_grow_with_the_number_of_cases(cached):
    small, large = _epoch_peak_bytes(_dataset_of(cached, 4)), _epoch_peak_bytes(_dataset_of(cached, 48))
    held = sum(c.load().image.nbytes for c in _dataset_of(cached, 48))  # what holding every case would take
    assert large < 1.5 * small and large < 0.5 * held, (small, large, held)


def test_an_epoch_is_drawn_the_same_from_its_seed_and_number(cached):
    def draw(epoch: int):
        ordered = [cached[i] for i in epoch_order(len(cached), seed=3, epoch=epoch)]
        return [b[0].numpy() for b in rebatch(epoch_loader(lesion_patches(ordered, PATCH, 2, 0.5), 3, epoch, workers=1), 2)]

    first, again, other = draw(1), draw(1), draw(2)
    assert len(first) == len(again) and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("positive_fraction", [1.0, 0.0])
def test_patches_follow_the_class_balance(cached, positive_fraction):
    lesioned = [c for c in cached if c.load().lesion_mask.any()]
    assert lesioned, "the synthetic source gave no case with a lesion"
    labels = [b[1] for b in rebatch(epoch_loader(lesion_patches(lesioned, PATCH, 4, positive_fraction), 0, 1, workers=0), 4)]
    with_lesion = np.mean([bool(patch.sum()) for batch in labels for patch in batch])
    assert with_lesion == 1.0 if positive_fraction == 1.0 else with_lesion < 1.0


def test_batches_regroup_the_cases_samples_and_drop_a_lone_last_one(cached):
    shapes = [tuple(b[0].shape) for b in rebatch(epoch_loader(lesion_patches(cached[:3], PATCH, 1, 0.5), 0, 1, workers=0), 2)]
    assert shapes == [(2, 1, *PATCH)]  # three patches: one batch of two, the lone third dropped (batch norm)
