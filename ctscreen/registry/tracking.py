"""A retraining run in MLflow: everything needed to reproduce it and to judge it, in one place.

One parent run per pipeline run — the training configuration as parameters; the dataset version,
code version and environment as tags; the winner's test figures and the gate's decision as metrics;
the comparison, figures and bundle as artifacts, the bundle also as an MLflow pyfunc model — and one
nested run per candidate with its per-epoch loss and validation metric.
"""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
from pathlib import Path

import mlflow

import ctscreen
from ctscreen.evaluation.evaluator import headline
from ctscreen.home import artifact_root
from ctscreen.registry.models import BUNDLE_ARTIFACT
from ctscreen.registry.pyfunc import log_bundle_model


def code_version() -> str:
    """The git commit of the running code (``+dirty`` with local changes), else the package version."""
    root = Path(ctscreen.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ctscreen.__version__
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, str]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "ctscreen": ctscreen.__version__, "cuda": str(torch.cuda.is_available())}


def experiment_id(tracking_uri: str, name: str) -> str:
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = str(artifact_root() / name) if tracking_uri.startswith("sqlite:") else None  # a server chooses its own
    return mlflow.create_experiment(name, artifact_location=location)


def _flatten(prefix: str, value) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(f"{prefix}.{key}" if prefix else key, sub).items()}
    return {prefix: json.dumps(value) if isinstance(value, (list, tuple)) else str(value)}


def log_retrain_run(tracking_uri: str, experiment: str, summary: dict, decision: dict, dataset_version: dict, bundle_dir: str | Path,
                    evaluation_dir: str | Path, candidates: list[tuple[str, str | Path]]) -> str:
    """Logs the run; returns the parent run's id (the bundle is its artifact ``bundle/``)."""
    bundle_document = json.loads((Path(bundle_dir) / "bundle.json").read_text())
    winner = summary["winner"]
    experiment_ = experiment_id(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=experiment_, run_name=f"retrain {dataset_version['git_rev'][:8]}") as parent:
        mlflow.log_params(_flatten("", bundle_document["provenance"].get("training_config", {})))
        mlflow.set_tags({
            "dataset.git_rev": dataset_version["git_rev"], "dataset.data_md5": str(dataset_version["data_md5"]),
            "dataset.cases": str(dataset_version["cases"]), "code.version": code_version(),
            **{f"env.{k}": v for k, v in environment().items()},
            "winner": f"{winner['segmentation']} -> {winner['classification']}", "gate": "passed" if decision["passed"] else "failed",
        })
        for test_set, figures in summary["test"].items():
            mlflow.log_metrics({f"{test_set}_{k}": v for k, v in headline(figures).items()})
            mlflow.log_metrics({f"{test_set}_site_{site}_{k}": float(v[k]) for site, v in figures.get("by_site", {}).items()
                                for k in ("auc", "sensitivity", "specificity") if v.get(k) is not None})
            if figures.get("auc_ci95"):
                mlflow.log_metrics({f"{test_set}_auc_ci_low": figures["auc_ci95"][0], f"{test_set}_auc_ci_high": figures["auc_ci95"][1]})
        mlflow.log_metrics({"threshold": float(winner["threshold"]), "gate_passed": float(decision["passed"])})
        for name, count in summary["split"].items():
            mlflow.log_metric(f"cases_{name}", count)
        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / "gate.json").write_text(json.dumps(decision, indent=2, default=str))
            mlflow.log_artifact(str(Path(scratch) / "gate.json"))
        mlflow.log_artifacts(str(evaluation_dir), "evaluation")
        mlflow.log_artifacts(str(bundle_dir), BUNDLE_ARTIFACT)  # what the registry and the release build read
        mlflow.set_tag("pyfunc_model", log_bundle_model(bundle_dir))  # the same bundle for MLflow's own tools
        for name, folder in candidates:
            with mlflow.start_run(experiment_id=experiment_, run_name=name, nested=True):
                mlflow.set_tags({"candidate": name, "dataset.git_rev": dataset_version["git_rev"]})
                for record in json.loads((Path(folder) / "history.json").read_text()):
                    mlflow.log_metrics({"loss": record["loss"], "samples_per_second": record["samples_per_second"],
                                        **{f"validation_{k}": v for k, v in record["validation"].items() if v is not None}},
                                       step=record["epoch"])
        return parent.info.run_id


def stage_history(tracking_uri: str, experiment: str) -> list[dict]:
    """Every retraining run of ``experiment`` in order: training cases, test AUC with CI, the
    winner's test labels and scores (for ROC curves per stage), and its registered version."""
    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    client = mlflow.MlflowClient(tracking_uri)
    parents = [r for r in client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time ASC"])
               if "mlflow.parentRunId" not in r.data.tags]
    history = []
    with tempfile.TemporaryDirectory() as scratch:
        for stage, run in enumerate(parents, start=1):
            scores = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="evaluation/scores.json",
                                                                          dst_path=f"{scratch}/{stage}", tracking_uri=tracking_uri)).read_text())
            metrics = run.data.metrics
            history.append({
                "stage": stage, "run_id": run.info.run_id, "dataset_rev": run.data.tags.get("dataset.git_rev"),
                "train_cases": int(metrics.get("cases_train", 0)), "auc": metrics.get("test_auc"), "gate": run.data.tags.get("gate"),
                "auc_ci95": [metrics["test_auc_ci_low"], metrics["test_auc_ci_high"]] if "test_auc_ci_low" in metrics else None,
                "test": scores.get("test"), "test_cases": len((scores.get("test") or {}).get("labels", [])),
            })
    return history
