"""What the pair gives for one preprocessed case, wherever it runs (this process, a Triton server).
Free of torch, so that a client of a remote pair (the edge agent) stays small."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ctscreen.imaging.preprocess import LungRegion


@dataclass
class PairOutput:
    probability_map: np.ndarray  # lesion probability per voxel, float32, the preprocessed image's shape
    covid_probability: float
    timings_s: dict[str, float] = field(default_factory=dict)


class PairPredictor(Protocol):
    """The pair wherever it runs (this process, a Triton server): one preprocessed case in, its output out."""

    served_by: dict  # where and how it runs, for the screening result
    lung_region: LungRegion | None  # the bundle's lung-region network where it runs (None: the classical extraction)

    def __call__(self, image: np.ndarray, lung_mask: np.ndarray) -> PairOutput: ...
