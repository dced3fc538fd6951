"""The training loop: loss goes down, checkpoints resume without losing finished epochs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctscreen.training.config import OptimiserConfig
from ctscreen.training.loop import fit


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
