"""Running the retrain pipeline: on this machine with ``kfp.local`` (the embedded default: a DVC local
remote, MLflow on SQLite, nothing to start by hand), or on a Kubeflow Pipelines cluster from the
compiled IR YAML — once, or as a recurring run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from dataclasses import asdict

from kfp import compiler

from ctscreen.dataset.intake import check_intake
from ctscreen.dataset.repository import DatasetRepository
from ctscreen.durations import duration_seconds
from ctscreen.evaluation.gate import GatePolicy
from ctscreen.home import bundle_signing_key, dvc_remote, home, scoped_environment
from ctscreen.inference.signature import generate_signing_key, public_key_of
from ctscreen.manifest import read_manifest
from ctscreen.training.config import load_config, load_section
from ctscreen.training.lungs import load_lung_config
from ctscreen.training.split import FRACTIONS
from pipelines.retrain import retrain

LOCAL_PARALLELISM = 2  # kfp.local's cap on the iterations of a dsl.ParallelFor running at once


def run_local(intake: str | Path, dataset: str | Path, tracking_uri: str, params: str | Path | None = None,
              overrides: list[str] = (), gate_overrides: list[str] = (), segmentation_models: list[str] | None = None,
              classification_models: list[str] | None = None, seed: int = 0, signing_key: str | Path | None = None,
              lung_overrides: list[str] = (), split_fractions: tuple[float, float, float] = FRACTIONS) -> dict:
    """One pipeline run with ``kfp.local``; creates the dataset repository (and its DVC remote; its
    first cases split by ``split_fractions``), and the key that signs registered bundles, on first use."""
    from kfp import local

    dataset = Path(dataset).resolve()
    if not (dataset / ".dvc").exists():
        DatasetRepository.create(dataset, dvc_remote(), split_fractions)
    signing_key = Path(signing_key or bundle_signing_key()).resolve()
    if not signing_key.exists():
        generate_signing_key(signing_key)
        print(f"created the bundle-signing key {signing_key} (public half: {public_key_of(signing_key)})", file=sys.stderr)
    # cached steps are keyed by their inputs, the dataset version among them: a second run on the same data reuses them
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(home() / "pipeline-root"), enable_caching=True)
    arguments = pipeline_arguments(Path(intake).resolve(), dataset, str((home() / "cache").resolve()), tracking_uri, params, overrides, gate_overrides,
                                   segmentation_models, classification_models, seed, signing_key, lung_overrides)
    started = time.perf_counter()
    # kfp.local runs a loop's candidates two at a time, each step its own process: with every core each,
    # their OpenMP threads spin against each other (training ran up to 40x slower); half the cores each
    threads = str(max(1, (os.cpu_count() or 2) // LOCAL_PARALLELISM))
    with contextlib.redirect_stdout(sys.stderr), scoped_environment(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads):
        result = json.loads(retrain(**arguments).output)
    return {**result, "seconds": round(time.perf_counter() - started, 1)}


def pipeline_arguments(intake: str | Path, dataset: str | Path, cache: str, tracking_uri: str, params: str | Path | None = None,
                       overrides: list[str] = (), gate_overrides: list[str] = (), segmentation_models: list[str] | None = None,
                       classification_models: list[str] | None = None, seed: int = 0, signing_key: str | Path | None = None,
                       lung_overrides: list[str] = ()) -> dict:
    """The pipeline's inputs, paths as given (they are paths where the steps run: on a cluster the
    signing key is a mounted secret); the configuration
    (``params.yaml`` and overrides) resolved and passed by value, its model lists unless others are given."""
    config = load_config(params, list(overrides))
    return {
        "intake": str(intake), "dataset": str(dataset), "cache": cache, "tracking_uri": tracking_uri, "seed": seed,
        "signing_key": str(signing_key or bundle_signing_key()),
        "config": json.dumps(config.to_dict()),
        "lung_config": json.dumps(load_lung_config(params, list(lung_overrides)).to_dict()),
        "gate_policy": json.dumps(asdict(load_section(GatePolicy, "gate", params, list(gate_overrides)))),
        "segmentation_models": list(segmentation_models or config.segmentation.models),
        "classification_models": list(classification_models or config.classification.models),
    }


def compile_pipeline(out: str | Path) -> Path:
    """The pipeline as Kubeflow Pipelines IR YAML, for a cluster."""
    compiler.Compiler().compile(retrain, str(out))
    return Path(out)


def submit(host: str, arguments: dict, experiment: str = "ctscreen-retrain", every: str | None = None) -> dict:
    """Submits the compiled pipeline to a Kubeflow Pipelines endpoint, once or every ``every``."""
    import tempfile

    from kfp import Client

    client = Client(host=host)
    with tempfile.TemporaryDirectory() as scratch:
        package = compile_pipeline(Path(scratch) / "retrain.yaml")
        if every is None:
            run = client.create_run_from_pipeline_package(str(package), arguments=arguments, experiment_name=experiment)
            return {"run_id": run.run_id}
        experiment_id = client.create_experiment(experiment).experiment_id
        seconds = duration_seconds(every, "--every")
        recurring = client.create_recurring_run(experiment_id, f"{experiment} every {every}", interval_second=seconds,
                                                params=arguments, pipeline_package_path=str(package))
        return {"recurring_run_id": recurring.recurring_run_id, "interval_seconds": seconds}


def new_case_count(intake: str | Path, dataset: str | Path, last_registered_rev: str | None) -> int:
    """Cases that arrived since the last registered model: accepted intake cases the dataset lacks,
    plus cases the dataset gained after that model's data version."""
    repo = DatasetRepository.open(dataset) if (Path(dataset) / ".dvc").exists() else None
    known = {r["case_id"] for r in read_manifest(repo.root / "manifest.csv", check_labels=False)} if repo else set()
    arriving = sum(r["case_id"] not in known for r in check_intake(intake).accepted)
    seen = repo.version(last_registered_rev)["cases"] if repo and last_registered_rev else 0
    return arriving + len(known) - seen
