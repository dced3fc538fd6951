"""Shared benchmark plumbing: interleaved timing against a baseline, and JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable


def environment() -> dict:
    import numpy
    import pydicom
    import SimpleITK
    import torch

    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "numpy": numpy.__version__,
        "pydicom": pydicom.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
        "torch": torch.__version__,
    }


def compare(candidate: Callable[[], object], baseline: Callable[[], object], repeats: int = 5) -> dict:
    """Median seconds of each, run alternately (order swapped every round) so both see the same machine."""
    times: dict[str, list[float]] = {"candidate": [], "baseline": []}
    for round_ in range(repeats):
        order = [("candidate", candidate), ("baseline", baseline)]
        for name, fn in order if round_ % 2 == 0 else reversed(order):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    candidate_s, baseline_s = statistics.median(times["candidate"]), statistics.median(times["baseline"])
    return {
        "candidate_median_s": round(candidate_s, 4),
        "baseline_median_s": round(baseline_s, 4),
        "ratio_candidate_over_baseline": round(candidate_s / baseline_s, 3),
        "repeats": repeats,
        "all_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
    }


def timed(fn: Callable[[], object], repeats: int = 3) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 4), "all_s": [round(t, 4) for t in times]}


def write_result(out_dir: Path, name: str, result: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "environment": environment(), **result}, indent=2))
    return path
