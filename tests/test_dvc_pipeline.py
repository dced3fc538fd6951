"""`dvc repro` runs dvc.yaml's stages — the same training and evaluation as the pipeline, from the
same code and params.yaml — records data, parameters and outputs in dvc.lock, and reruns only what
a change touches."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ctscreen.imaging.synth import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = {"spacing_zyx": [5.0, 4.0, 4.0],
        "segmentation": {"models": ["fcn8s"], "profile": "tiny", "samples_per_case": 1, "optimiser": {"epochs": 1}},
        "classification": {"models": ["resnet50"], "profile": "tiny", "optimiser": {"epochs": 1}},
        "evaluation": {"bootstrap_resamples": 50}}
TINY_LUNGS = {"profile": "tiny", "spacing_zyx": [10, 8, 8], "patch_zyx": [32, 48, 48], "samples_per_case": 4, "validate_every": 5,
              "optimiser": {"lr": 0.01, "epochs": 15, "data_workers": 0}}  # tests.tiny_lungs's settings


def _merge(base: dict, changes: dict) -> dict:
    return {**base, **{k: _merge(base.get(k, {}), v) if isinstance(v, dict) else v for k, v in changes.items()}}


def _run(*command, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def test_dvc_repro_trains_evaluates_and_reruns_only_what_changed(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "dvc.yaml", project)
    shutil.copytree(ROOT / "ctscreen", project / "ctscreen", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"] = _merge(params["train"], TINY)
    params["lungs"] = _merge(params["lungs"], TINY_LUNGS)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    generate_dataset(project / "data" / "synthetic", cases=12, sites=2, profile="tiny", progress=False)
    _run("git", "init", "-q", cwd=project)
    _run(sys.executable, "-m", "dvc", "init", "-q", cwd=project)
    _run(sys.executable, "-m", "dvc", "add", "-q", "data/synthetic", cwd=project)

    _run(sys.executable, "-m", "dvc", "repro", cwd=project)
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"train_lungs", "train_segmentation", "train_classification", "evaluate"}
    assert lock["train_segmentation"]["params"]["params.yaml"]["train.segmentation"]["profile"] == "tiny"
    data_hash = next(d["md5"] for d in lock["train_segmentation"]["deps"] if d["path"] == "data/synthetic")
    assert data_hash.endswith(".dir")
    evaluation = json.loads((project / "runs" / "dvc" / "evaluation" / "evaluation.json").read_text())
    assert evaluation["cases"] > 0 and evaluation["model"]["name"] == "fcn8s+resnet50"
    assert (project / "runs" / "dvc" / "bundle" / "lungs" / "lung_region.onnx").is_file()  # the bundle carries its lung model

    assert "didn't change, skipping" in _run(sys.executable, "-m", "dvc", "repro", cwd=project)
    params["train"]["classification"]["optimiser"]["epochs"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    status = _run(sys.executable, "-m", "dvc", "status", cwd=project)
    assert "train_classification" in status and "train_segmentation" not in status
