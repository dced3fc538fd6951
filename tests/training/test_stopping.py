"""The median stopping rule: a candidate trailing the earlier ones' running averages is ended, and
only from its start epoch, with two earlier candidates that trained that far (in the loop: test_loop.py)."""

from __future__ import annotations

import pytest

from ctscreen.training.loop import EpochRecord
from ctscreen.training.stopping import below_median, running_average


def history(values: list[float | None]) -> list[EpochRecord]:
    return [EpochRecord(e, 1.0, 1.0, 1.0, validation={} if v is None else {"dice": v}) for e, v in enumerate(values, start=1)]


# running averages at epoch 4: [0.1, 0.3] -> 0.2, [0.3, 0.5] -> 0.4, [0.5, 0.9] -> 0.7 (epochs without validation skipped)
PEERS = [history([None, 0.1, None, 0.3]), history([None, 0.3, None, 0.5]), history([None, 0.5, None, 0.9])]


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
