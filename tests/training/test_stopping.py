"""The median stopping rule: a candidate trailing the earlier ones' running averages is ended, and
only from its start epoch, with two earlier candidates that trained that far."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctscreen.training.config import OptimiserConfig
from ctscreen.training.loop import EpochRecord, fit
from ctscreen.training.stopping import below_median, running_average


def _history(values: list[float | None]) -> list[EpochRecord]:
    return [EpochRecord(e, 1.0, 1.0, 1.0, validation={} if v is None else {"dice": v}) for e, v in enumerate(values, start=1)]


# running averages at epoch 4: [0.1, 0.3] -> 0.2, [0.3, 0.5] -> 0.4, [0.5, 0.9] -> 0.7 (epochs without validation skipped)
PEERS = [_history([None, 0.1, None, 0.3]), _history([None, 0.3, None, 0.5]), _history([None, 0.5, None, 0.9])]


def test_running_average_is_over_the_validated_epochs_up_to_the_epoch():
    assert running_average(PEERS[2], "dice", 4) == pytest.approx(0.7)
    assert running_average(PEERS[2], "dice", 3) == pytest.approx(0.5)
    assert running_average(PEERS[2], "dice", 1) is None


@pytest.mark.parametrize("epoch, best, peers, start, stops", [
    (4, 0.39, PEERS, 2, True),       # below the median 0.4
    (4, 0.40, PEERS, 2, False),      # at the median: not below
    (4, 0.39, PEERS, 5, False),      # before the rule's start epoch
    (4, 0.01, PEERS[:1], 2, False),  # one earlier candidate is no median
    (4, 0.44, [PEERS[0], PEERS[1][:2], PEERS[2]], 2, True),  # the middle one ended at epoch 2: the median of 0.2 and 0.7 is 0.45
    (4, 0.01, [PEERS[0], PEERS[1][:2]], 2, False),  # only one earlier candidate trained to epoch 4
    (4, None, PEERS, 2, False),      # nothing validated yet
])
def test_below_median(epoch, best, peers, start, stops):
    assert below_median(epoch, best, peers, "dice", start) is stops


def _problem():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=generator)
    y = (x[:, :1] > 0).float()
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 1)), nn.BCEWithLogitsLoss(), lambda epoch, rank, world: iter([(x, y)])


def test_a_trailing_candidate_is_ended_at_the_first_validated_epoch_the_rule_judges_and_stays_ended(tmp_path):
    model, loss, batches = _problem()
    config = OptimiserConfig(lr=0.01, weight_decay=0, epochs=6, median_stop_from=3)
    strong = [_history([0.8] * 6), _history([0.9] * 6)]
    result = fit(model, loss, batches, config, tmp_path / "weak", validate=lambda m: {"dice": 0.5}, metric="dice",
                 progress=False, peers=strong)
    assert result.stopped_early and [r.epoch for r in result.history] == [1, 2, 3]
    again = fit(model, loss, batches, config, tmp_path / "weak", validate=lambda m: {"dice": 0.5}, metric="dice",
                progress=False, peers=strong)
    assert len(again.history) == 3  # resuming an ended candidate trains no further

    leading = fit(*_problem(), config, tmp_path / "strong", validate=lambda m: {"dice": 0.95}, metric="dice", progress=False, peers=strong)
    assert not leading.stopped_early and len(leading.history) == 6
    off = fit(*_problem(), OptimiserConfig(lr=0.01, weight_decay=0, epochs=6), tmp_path / "off", validate=lambda m: {"dice": 0.5},
              metric="dice", progress=False, peers=strong)
    assert not off.stopped_early and len(off.history) == 6  # the rule is off unless median_stop_from is set
