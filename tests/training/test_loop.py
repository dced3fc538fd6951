"""The training loop: loss goes down, checkpoints resume without losing finished epochs, the learning-rate
schedule and early stopping (patience, and the median rule against earlier candidates)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ctscreen.errors import InputError
from ctscreen.training.config import OptimiserConfig, load_config
from ctscreen.training.loop import fit
from tests.training.test_stopping import history


def _problem(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 4, generator=generator)
    y = (x[:, :1] - x[:, 1:2] > 0).float()

    def batches(epoch, rank, world):
        for i in range(rank * 8, 32, 8 * world):
            yield x[i : i + 8], y[i : i + 8]

    return batches, x, y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def test_loss_decreases_and_best_checkpoint_follows_the_metric(tmp_path):
    batches, x, y = _problem()
    model = _model()
    loss = nn.BCEWithLogitsLoss()
    result = fit(model, loss, batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=8), tmp_path,
                 validate=lambda m: {"accuracy": float(((m(x) > 0).float() == y).float().mean())}, metric="accuracy", progress=False)
    assert result.history[-1].loss < result.history[0].loss
    best = max(result.history, key=lambda r: r.validation["accuracy"])
    assert result.best_metric == best.validation["accuracy"]
    assert torch.load(tmp_path / "best.pt", weights_only=False)["epoch"] == result.best_epoch


def test_resume_after_interruption_keeps_finished_epochs(tmp_path):
    batches, _, _ = _problem()
    loss = nn.BCEWithLogitsLoss()
    uninterrupted = fit(_model(), loss, batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=4), tmp_path / "a", progress=False)

    calls = {"n": 0}

    def interrupted_batches(epoch, rank, world):
        for batch in batches(epoch, rank, world):
            calls["n"] += 1
            if epoch == 3 and calls["n"] > 9:
                raise KeyboardInterrupt  # the machine goes away in the middle of epoch 3
            yield batch

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), loss, interrupted_batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=4), tmp_path / "b", progress=False)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert len(state["history"]) == 2  # epochs 1 and 2 were kept
    resumed = fit(_model(), loss, batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=4), tmp_path / "b", progress=False)
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(uninterrupted.history, resumed.history):
        assert abs(a.loss - b.loss) < 1e-6  # the same run as if nothing had happened


def test_cosine_schedule_anneals_to_zero_and_resumes_on_it(tmp_path):
    batches, _, _ = _problem()
    loss = nn.BCEWithLogitsLoss()
    config = OptimiserConfig(lr=0.05, weight_decay=0, epochs=4, schedule="cosine")
    result = fit(_model(), loss, batches, config, tmp_path / "a", progress=False)
    expected = [0.05 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]  # the learning rate each epoch trained at
    assert [r.lr for r in result.history] == pytest.approx(expected)
    assert result.history[-1].loss < result.history[0].loss

    fit(_model(), loss, batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=2, schedule="cosine"), tmp_path / "b", progress=False)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert state["schedule"]["last_epoch"] == 2  # the schedule's place is in the checkpoint
    constant = fit(_model(), loss, batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=3), tmp_path / "c", progress=False)
    assert [r.lr for r in constant.history] == [0.05] * 3


def test_early_stopping_ends_training_patience_epochs_after_the_best_and_stays_stopped(tmp_path):
    batches, _, _ = _problem()
    loss = nn.BCEWithLogitsLoss()
    metrics = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.95])  # best at epoch 2, then two epochs without a better one
    config = OptimiserConfig(lr=0.05, weight_decay=0, epochs=6, patience=2)
    result = fit(_model(), loss, batches, config, tmp_path, validate=lambda m: {"auc": next(metrics)}, metric="auc", progress=False)
    assert result.stopped_early
    assert [r.epoch for r in result.history] == [1, 2, 3, 4]
    assert (result.best_epoch, result.best_metric) == (2, 0.7)
    assert torch.load(tmp_path / "best.pt", weights_only=False)["epoch"] == 2

    again = fit(_model(), loss, batches, config, tmp_path, validate=lambda m: {"auc": 1.0}, metric="auc", progress=False)
    assert again.stopped_early and len(again.history) == 4  # a finished run is not trained on when run again

    unstopped = fit(_model(), loss, batches, OptimiserConfig(lr=0.05, weight_decay=0, epochs=6), tmp_path / "b",
                    validate=lambda m: {"auc": 0.5}, metric="auc", progress=False)
    assert not unstopped.stopped_early and len(unstopped.history) == 6


def test_a_trailing_candidate_is_ended_at_the_first_validated_epoch_the_rule_judges_and_stays_ended(tmp_path):
    batches, _, _ = _problem()
    loss = nn.BCEWithLogitsLoss()
    config = OptimiserConfig(lr=0.01, weight_decay=0, epochs=6, median_stop_from=3)
    strong = [history([0.8] * 6), history([0.9] * 6)]
    result = fit(_model(), loss, batches, config, tmp_path / "weak", validate=lambda m: {"dice": 0.5}, metric="dice",
                 progress=False, peers=strong)
    assert result.stopped_early and [r.epoch for r in result.history] == [1, 2, 3]
    again = fit(_model(), loss, batches, config, tmp_path / "weak", validate=lambda m: {"dice": 0.5}, metric="dice",
                progress=False, peers=strong)
    assert len(again.history) == 3  # resuming an ended candidate trains no further

    leading = fit(_model(), loss, batches, config, tmp_path / "strong", validate=lambda m: {"dice": 0.95}, metric="dice",
                  progress=False, peers=strong)
    assert not leading.stopped_early and len(leading.history) == 6
    off = fit(_model(), loss, batches, OptimiserConfig(lr=0.01, weight_decay=0, epochs=6), tmp_path / "off",
              validate=lambda m: {"dice": 0.5}, metric="dice", progress=False, peers=strong)
    assert not off.stopped_early and len(off.history) == 6  # the rule is off unless median_stop_from is set


@pytest.mark.parametrize("override, message", [
    ("segmentation.optimiser.schedule=step", "segmentation.optimiser.schedule must be one of constant, cosine"),
    ("classification.optimiser.patience=0", "classification.optimiser.patience must be a whole number"),
    ("segmentation.optimiser.median_stop_from=0", "segmentation.optimiser.median_stop_from must be a whole number"),
])
def test_unknown_schedule_or_patience_is_refused_with_the_setting_named(override, message):
    with pytest.raises(InputError, match=message):
        load_config(None, [override])
