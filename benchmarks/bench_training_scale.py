"""Training at the paper's scale on a CPU: peak resident memory and samples per second of one epoch
of lesion-segmentation and of classification training at 50, 200 and 1,136 cases (the paper's
training count), each in a fresh process, with the streamed data path (MONAI datasets, a
``DataLoader`` with a worker) — and beside it, as the baseline, the old path's cost: every
preprocessed case held in memory at once (where that would take more than half of this machine's
memory, the arrays' size instead of a run).

The cases are the tiny synthetic profile at the paper's 1 x 1 x 2.5 mm: a few distinct cases
generated and preprocessed once, then drawn under new case ids up to the count, each read from disk
whenever the loader draws it, as a dataset of that size is read. Memory must
stay flat as the cases grow: the figure is peak RSS at N over peak RSS at 50.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import write_result

COUNTS = (50, 200, 1136)
DISTINCT = 12  # generated cases; the rest link to their cache entries
HERE = Path(__file__).resolve().parent


def _peak_rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main_peak_rss_mb": round(own, 1), "worker_peak_rss_mb": round(workers, 1)}


def _cases(root: Path, count: int):
    """``count`` cases cycling over the distinct ones: each a case of its own to the loader, which
    reads its cache entry (and classifier input) from disk whenever it is drawn."""
    from ctscreen.evaluation.evaluator import SegmentedCases
    from ctscreen.training.cases import CachedCase

    base = [CachedCase(**{**c, "path": Path(c["path"])}) for c in json.loads((root / "base.json").read_text())]
    segmented = SegmentedCases.open(root / "segmented")
    cases = [replace(base[i % len(base)], case_id=f"scale-{i:05d}") for i in range(count)]
    return cases, SegmentedCases(segmented.root, tuple(segmented.records[i % len(base)] for i in range(count)))


def _epoch(root: Path, count: int, mode: str) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from ctscreen.training.classification import train_classification
    from ctscreen.training.config import load_config
    from ctscreen.training.segmentation import train_segmentation

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # one core for the loader's worker
    cases, segmented = _cases(root, count)
    if mode == "in-memory":  # the old path: every case's arrays held at once
        one = cases[0].load()
        per_case_mb = (one.image.nbytes + one.lung_mask.nbytes + one.lesion_mask.nbytes) / 2**20
        if per_case_mb * count > 0.5 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20:
            # more than half this machine's memory: not attempted, the arrays' size is the figure
            return {"cases": count, "estimated": True, "held_arrays_mb": round(per_case_mb * count, 1),
                    "main_peak_rss_mb": round(per_case_mb * count, 1), "worker_peak_rss_mb": 0.0}
        start = time.perf_counter()
        held = [c.load() for c in cases]
        return {"cases": count, "seconds": round(time.perf_counter() - start, 2), "held_arrays_mb": round(
            sum(c.image.nbytes + c.lung_mask.nbytes + c.lesion_mask.nbytes for c in held) / 2**20, 1), **_peak_rss_mb()}
    config = load_config(None, ["segmentation.profile=tiny", "classification.profile=tiny", "segmentation.optimiser.epochs=1",
                                "classification.optimiser.epochs=1", "segmentation.samples_per_case=2",
                                "segmentation.optimiser.data_workers=1", "classification.optimiser.data_workers=1"])
    with tempfile.TemporaryDirectory() as scratch:
        validation = cases[:4]
        if mode == "segmentation":
            run = train_segmentation("unet", cases, validation, config.segmentation, scratch, progress=False)
        else:
            run = train_classification("resnet50", segmented, segmented.select(segmented.case_ids[:8]), config.classification,
                                       scratch, progress=False)
    record = run.history[0]
    return {"cases": count, "epoch_seconds": record.seconds, "samples_per_second": record.samples_per_second, **_peak_rss_mb()}


def _prepare(root: Path) -> None:
    """The distinct cases: generated, preprocessed into the cache, segmented into classifier inputs."""
    from ctscreen.evaluation.evaluator import segment
    from ctscreen.imaging.synth import generate_dataset
    from ctscreen.models import build_model
    from ctscreen.models.classification import INPUT_ZYX
    from ctscreen.models.segmentation import PATCH_ZYX
    from ctscreen.training.cases import prepare_cases

    manifest = generate_dataset(root / "data", cases=DISTINCT, sites=2, seed=3, profile="tiny", progress=False)
    cases = prepare_cases(manifest, root / "cache", progress=False)
    segment(build_model("unet", "tiny").eval(), cases, PATCH_ZYX["tiny"], INPUT_ZYX["tiny"], root / "segmented", progress=False)
    (root / "base.json").write_text(json.dumps([{**c.__dict__, "path": str(c.path)} for c in cases]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--measure", nargs=3, metavar=("ROOT", "COUNT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        root, count, mode = args.measure
        print(json.dumps(_epoch(Path(root), int(count), mode)))
        return 0
    results: dict[str, list[dict]] = {"segmentation": [], "classification": [], "in-memory": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        _prepare(root)
        for count in COUNTS:
            for mode in results:
                done = subprocess.run([sys.executable, __file__, "--measure", str(root), str(count), mode], capture_output=True,
                                      text=True, check=True)
                results[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{mode} at {count} cases: {results[mode][-1]}", file=sys.stderr)
    for mode, rows in results.items():
        for row in rows:
            row["main_peak_rss_over_50_cases"] = round(row["main_peak_rss_mb"] / rows[0]["main_peak_rss_mb"], 3)
    path = write_result(args.out, "bench_training_scale", {
        "counts": list(COUNTS), "distinct_cases": DISTINCT, "profile": "tiny", "spacing_zyx_mm": [2.5, 1.0, 1.0],
        "streamed": {"segmentation": results["segmentation"], "classification": results["classification"]},
        "baseline_in_memory": results["in-memory"],
    })
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
