"""The median stopping rule (Golovin et al., "Google Vizier", 2017; Katib's ``medianstop``): where
candidate models train one after another, a candidate whose best validation metric by an epoch is
below the median of the earlier candidates' running averages at that epoch is ended there. A
candidate that will not win stops costing epochs, so the time goes to the ones that might."""

from __future__ import annotations

from statistics import median
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from ctscreen.training.loop import EpochRecord

# Katib's default asks for 3 finished trials; with the paper's four candidates per task that would
# only ever judge the last one, so two earlier candidates make a median here.
MIN_PEERS = 2


def running_average(history: Sequence[EpochRecord], metric: str, epoch: int) -> float | None:
    """The mean of ``metric`` over the validated epochs of ``history`` up to ``epoch`` (None before any)."""
    values = [r.validation[metric] for r in history if r.epoch <= epoch and r.validation.get(metric) is not None]
    return sum(values) / len(values) if values else None


def below_median(epoch: int, best: float | None, peers: Sequence[Sequence[EpochRecord]], metric: str, start_epoch: int) -> bool:
    """Whether a candidate whose best ``metric`` by ``epoch`` is ``best`` stops: from ``start_epoch``
    on, when at least ``MIN_PEERS`` earlier candidates trained to ``epoch`` and the median of their
    running averages there is higher."""
    if best is None or epoch < start_epoch:
        return False
    averages = [a for a in (running_average(p, metric, epoch) for p in peers if p and p[-1].epoch >= epoch) if a is not None]
    return len(averages) >= MIN_PEERS and best < median(averages)
