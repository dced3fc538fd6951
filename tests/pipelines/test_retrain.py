"""The retrain pipeline end to end with kfp.local, twice — a first stage, then a second after new
cases arrive — on a tiny synthetic dataset with planted bad cases; and its compiled IR."""

import json
import os
import secrets
import subprocess
import sys

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from ctscreen.dataset.repository import DatasetRepository
from ctscreen.dataset.synthetic import synthetic_intake
from ctscreen.home import dvc_remote
from ctscreen.manifest import read_manifest
from ctscreen.registry.models import CHALLENGER, ModelRegistry
from pipelines.runner import compile_pipeline, run_local
from pipelines.stages import stage_sizes, summarise_stages
from tests.pipelines.tiny import LUNGS, MODELS, TINY, run_folders


def test_each_stage_versions_the_data_and_keeps_the_test_set(stages):
    _, _, _, versions, splits, _ = stages
    assert versions[0]["cases"] == 14 and versions[1]["cases"] == 20
    assert versions[0]["data_md5"] != versions[1]["data_md5"] and versions[0]["git_rev"] != versions[1]["git_rev"]
    tests = [{k for k, v in split.items() if v == "test"} for split in splits]
    assert tests[0] and tests[0] == tests[1]


def test_planted_bad_cases_are_rejected_with_reasons(stages):
    root, _, runs, _, _, _ = stages
    first_run = run_folders(root)[0]
    report = (first_run / "ingest" / "rejected").read_text()
    for case_id, reason in runs[0]["planted"].items():
        assert f"| {case_id} | " in report and reason in report


def test_mlflow_holds_nested_runs_with_metrics_plots_and_the_bundle(stages):
    _, uri, runs, versions, _, _ = stages
    client = MlflowClient(uri)
    parent = client.get_run(runs[1]["run_id"])
    assert parent.data.tags["dataset.git_rev"] == versions[1]["git_rev"] and parent.data.tags["dataset.data_md5"] == versions[1]["data_md5"]
    assert "test_auc" in parent.data.metrics and "segmentation.optimiser.lr" in parent.data.params
    assert parent.data.tags["code.version"] and parent.data.tags["env.torch"]
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["candidate"] for c in children) == ["classification/inception_v3", "classification/resnet50",
                                                                  "segmentation/fcn8s", "segmentation/unet"]
    losses = client.get_metric_history(children[0].info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)} | {a.path for a in client.list_artifacts(parent.info.run_id, "evaluation")}
    assert {"bundle", "gate.json", "evaluation/figure2a_roc_classifiers_test.png", "evaluation/comparison.md",
            "evaluation/reliability_test.png"} <= artifacts
    assert {"test_brier", "test_ece"} <= set(parent.data.metrics) and any("_site_" in m for m in parent.data.metrics)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        pyfunc = mlflow.pyfunc.load_model(parent.data.tags["pyfunc_model"])  # the bundle as MLflow's own tools load it
    finally:
        mlflow.set_tracking_uri(previous)
    assert [i.name for i in pyfunc.metadata.get_input_schema().inputs] == ["hu", "spacing_zyx"]
    assert "covid_probability" in [o.name for o in pyfunc.metadata.get_output_schema().inputs]


def test_the_registered_bundle_finds_the_lungs_with_the_run_s_lung_region_model(stages, tmp_path):
    """The pipeline's first training step is the lung-region model; adopted, every later step
    preprocesses with it, and the registered bundle carries it for the release to serve."""
    from ctscreen.registry.models import ModelRegistry

    _, uri, runs, _, _, _ = stages
    bundle = ModelRegistry(uri).download(runs[1]["version"], tmp_path / "bundle")
    assert bundle.preprocessing.lung_model and bundle.lung_region("onnx").digest == bundle.preprocessing.lung_model
    lungs = bundle.provenance["lung_region"]
    assert lungs["adopted"] and lungs["validation_dice"] >= 0.5 and lungs["model"] == "unet"


def test_registry_show_gives_every_site_s_figures_before_a_release(stages):
    _, uri, runs, _, _, (registered, _) = stages
    kept = registered[runs[1]["version"]].figures()["test"]
    shown = subprocess.run([sys.executable, "-m", "ctscreen.cli", "registry", "show", runs[1]["version"], "--tracking-uri", uri],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    rows = [line.split() for line in shown.stdout.splitlines()]
    for site, figures in kept["by_site"].items():
        row = next(r for r in rows if r and r[0] == site)
        assert int(float(row[1])) == figures["cases"]
    assert any(r[:2] == ["test", "all"] for r in rows) and len(kept["by_site"]) >= 2


def test_registered_versions_carry_the_aliases_the_gate_decided(stages):
    _, _, runs, versions, _, (registered, champion) = stages
    first, second = registered[runs[0]["version"]], registered[runs[1]["version"]]
    assert (first.version, second.version) == ("1", "2") and sorted(registered) == ["1", "2"]
    assert first.tags["gate"] == "passed" and first.tags["dataset_rev"] == versions[0]["git_rev"]
    assert CHALLENGER in second.aliases
    assert champion == ("2" if second.tags["gate"] == "passed" else "1") == runs[1]["champion"]
    assert second.tags["gate_reasons"] and second.tags["bundle_sha256"]


def _gate_decision(uri: str, run_id: str, folder) -> dict:
    from mlflow.artifacts import download_artifacts

    return json.loads(open(download_artifacts(run_id=run_id, artifact_path="gate.json", dst_path=str(folder), tracking_uri=uri)).read())


def test_the_registered_figures_are_the_gate_s_figures_and_the_evaluator_s(stages, tmp_path):
    """One evaluator: what the registry keeps of a version (overall and per site) is what its gate
    decided on, the champion the next gate re-evaluated is what the registry kept of it, and
    evaluating the registered bundle anew (as ``ctscreen evaluate`` does) gives the same figures."""
    from ctscreen.evaluation.bundle_evaluation import evaluate_bundle
    from ctscreen.evaluation.evaluator import headline

    root, uri, runs, versions, splits, (registered, _) = stages
    first, second = (registered[runs[i]["version"]].figures()["test"] for i in (0, 1))
    decisions = [_gate_decision(uri, runs[i]["run_id"], tmp_path / str(i)) for i in (0, 1)]
    for kept, decided in ((first, decisions[0]["challenger_test"]), (second, decisions[1]["challenger_test"]),
                          (first, decisions[1]["champion_test"])):
        assert {k: kept[k] for k in headline(decided)} == pytest.approx(headline(decided), abs=1e-6)
        assert set(kept["by_site"]) == set(decided["by_site"])
        for site, figures in decided["by_site"].items():
            assert kept["by_site"][site] == pytest.approx({k: figures[k] for k in kept["by_site"][site]}, abs=1e-6)
    manifest = DatasetRepository.open(root / "home" / "dataset").manifest_at(versions[1]["git_rev"], tmp_path / "manifest.csv")
    test = {case for case, name in splits[1].items() if name == "test"}
    bundle = ModelRegistry(uri).download(runs[1]["version"], tmp_path / "bundle")
    anew = evaluate_bundle(bundle, manifest, tmp_path / "evaluation", root / "home" / "cache", test, progress=False)
    # a fresh process may sum in another order than the pipeline's step: a voxel near p = 0.5 can flip
    assert {k: v for k, v in headline(anew).items() if k != "lesion_dice"} == pytest.approx(
        {k: second[k] for k in headline(anew) if k != "lesion_dice"}, abs=1e-4)
    assert anew["lesion_dice"] == pytest.approx(second["lesion_dice"], abs=0.02)


def test_compiled_pipeline_has_every_step_and_asks_for_gpus_to_train(tmp_path):
    ir = yaml.safe_load(compile_pipeline(tmp_path / "retrain.yaml").read_text())
    executors = ir["deploymentSpec"]["executors"]
    assert {f"exec-{s}" for s in ("ingest", "train-lungs", "preprocess", "split", "train-segmentation", "select-segmentation", "train-classification",
                                  "evaluate", "gate", "register")} == set(executors)
    for step in ("train-lungs", "train-segmentation", "train-classification"):
        resources = executors[f"exec-{step}"]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu" and resources["resourceMemoryRequest"]
    assert executors["exec-ingest"]["container"]["image"].startswith("ghcr.io/ctscreen/ctscreen")
    loops = [t for t in ir["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert len(loops) == 2  # segmentation and classification candidates in parallel
    assert json.dumps(ir).count("dataset_version") > 5  # the data version is an explicit input of the later steps


def test_a_second_run_on_the_same_data_reuses_the_cached_steps_and_registers_nothing_new(stages):
    root, uri, runs, versions, _, (registered, _) = stages
    assert DatasetRepository.open(root / "home" / "dataset").version() == versions[1]
    rerun = run_folders(root)[2]
    assert {p.name for p in rerun.iterdir() if p.is_dir()} == {"ingest", "gate", "register"}  # never cached: they read the world
    assert runs[2]["version"] == runs[1]["version"] and len(ModelRegistry(uri).versions()) == len(registered)


def test_the_stages_draw_their_learning_curve_from_mlflow(stages, tmp_path):
    _, uri, runs, _, _, (registered, _) = stages
    summary = summarise_stages(tmp_path, uri, runs[:3])  # two stages and the rerun on the second stage's data
    recorded = summary["stages"]
    assert [r["version"] for r in recorded] == [runs[0]["version"], runs[1]["version"], runs[1]["version"]]
    assert recorded[0]["train_cases"] < recorded[1]["train_cases"] == recorded[2]["train_cases"]
    for record in recorded[:2]:
        assert record["auc"] == pytest.approx(registered[record["version"]].figures()["test"]["auc"])
        assert record["gate"] == registered[record["version"]].tags["gate"]
        assert record["auc_ci95"][0] <= record["auc"] <= record["auc_ci95"][1]
    assert [r["champion"] for r in recorded] == [r["version"] == runs[2]["champion"] for r in recorded] and summary["champion"] == runs[2]["champion"]
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000 and (tmp_path / "figure2b_roc_per_stage.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "stages.json").read_text())["stages"][1]["train_cases"] == recorded[1]["train_cases"]


def test_stage_sizes_grow_by_the_factor_and_bad_settings_are_refused():
    assert stage_sizes(4, 10, 1.5) == [10, 15, 22, 34]
    with pytest.raises(ValueError, match="at least 1"):
        stage_sizes(0, 10, 1.5)


def test_retrain_starts_only_when_enough_new_cases_have_arrived(stages, tmp_path):
    root, uri, _, _, _, _ = stages
    synthetic_intake(tmp_path / "arrivals", cases=3, key=secrets.token_bytes(32), profile="tiny", first=20, progress=False)
    result = subprocess.run([sys.executable, "-m", "ctscreen.cli", "retrain", "--min-new-cases", "5", "--intake", str(tmp_path / "arrivals"),
                             "--dataset", str(root / "home" / "dataset"), "--mlflow-uri", uri, "--json"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "CTSCREEN_HOME": str(root / "home")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"started": False, "new_cases": 3, "min_new_cases": 5}


def test_a_failed_step_leaves_the_dataset_and_the_registry_as_they_were(stages, tmp_path):
    root, uri, _, versions, _, _ = stages
    arrivals = synthetic_intake(tmp_path / "arrivals", cases=2, key=secrets.token_bytes(32), profile="tiny", first=20, progress=False)
    before = [(v.version, v.aliases) for v in ModelRegistry(uri).versions()]
    remote = dvc_remote()
    remote.rename(remote.with_name("dvc-remote-away"))
    remote.write_text("the DVC remote is unreachable")  # ingest's push fails
    try:
        with pytest.raises(RuntimeError, match="FAILURE"):
            run_local(tmp_path / "arrivals", root / "home" / "dataset", uri, overrides=TINY, lung_overrides=LUNGS, **MODELS)
    finally:
        remote.unlink()
        remote.with_name("dvc-remote-away").rename(remote)
    assert [(v.version, v.aliases) for v in ModelRegistry(uri).versions()] == before
    repo = DatasetRepository.open(root / "home" / "dataset")
    assert repo.version() == versions[1]
    assert not any((repo.root / "cases" / r["case_id"]).exists() for r in read_manifest(arrivals, check_labels=False))
