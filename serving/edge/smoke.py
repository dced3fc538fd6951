"""The smoke test a node runs on a loaded candidate before it serves anyone: the release's synthetic
reference cases through the node's own Triton must reproduce the outputs ``release build`` computed
for them, within the release's stated tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctscreen.errors import CTScreenError
from serving.triton.client import TritonPair
from serving.triton.config import LUNG_REGION, SCREENING


class SmokeTestFailed(CTScreenError):
    """A candidate whose outputs on the reference cases are not the release's."""


def smoke_test(pair: TritonPair, repository: Path, version: int, tolerance: float) -> dict:
    """Returns the largest differences seen; raises ``SmokeTestFailed`` beyond ``tolerance``."""
    reference = np.load(Path(repository) / SCREENING / str(version) / "reference.npz")
    cases = sorted({name.split("/")[0] for name in reference.files})
    worst = {"lesion_probability": 0.0, "covid_probability": 0.0, "cases": len(cases)}
    for case in cases:
        if f"{case}/lung_window" in reference.files:  # the lung-region network, on the case's first window
            found = pair.infer_network(LUNG_REGION, reference[f"{case}/lung_window"], version)
            worst["lung_logits"] = max(worst.get("lung_logits", 0.0), float(np.abs(found - reference[f"{case}/lung_logits"]).max()))
        output = pair(reference[f"{case}/image"], reference[f"{case}/lung_mask"], version=version)
        expected = reference[f"{case}/lesion_probability"]
        if output.probability_map.shape != expected.shape:
            raise SmokeTestFailed(f"release {version}, reference case {case}: map of shape {output.probability_map.shape}, "
                                  f"expected {expected.shape}")
        worst["lesion_probability"] = max(worst["lesion_probability"], float(np.abs(output.probability_map - expected).max()))
        worst["covid_probability"] = max(worst["covid_probability"],
                                         abs(output.covid_probability - float(reference[f"{case}/covid_probability"])))
    largest = max(v for k, v in worst.items() if k != "cases")
    if not largest <= tolerance:
        raise SmokeTestFailed(f"release {version}: outputs on the reference cases differ from the release's by up to "
                              f"{largest:.3g} (tolerance {tolerance:g})")
    return worst
