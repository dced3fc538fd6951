"""The retrain pipeline's data steps run by kfp.local: ingest (with planted bad cases), preprocess, split."""

import json
import secrets

import pytest
from kfp import dsl, local

from components.ingest import ingest
from components.preprocess import preprocess
from components.split import split
from ctscreen.dataset.repository import DatasetRepository
from ctscreen.dataset.synthetic import synthetic_intake
from ctscreen.training.config import load_config
from tests.dataset.bad_cases import plant_bad_cases


CONFIG = json.dumps(load_config(None, ["spacing_zyx=[5.0, 4.0, 4.0]"]).to_dict())


@dsl.pipeline
def data_steps(intake: str, dataset: str, cache: str) -> dsl.Dataset:
    ingested = ingest(intake=intake, dataset=dataset, seed=0)
    prepared = preprocess(dataset=dataset, dataset_version=ingested.outputs["dataset_version"], cache=cache, config=CONFIG)
    return split(dataset=dataset, dataset_version=ingested.outputs["dataset_version"], manifest=prepared.outputs["manifest"]).outputs["assignment"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data-steps")
    intake = root / "intake"
    synthetic_intake(intake, cases=6, key=secrets.token_bytes(32), profile="tiny", progress=False)
    planted = plant_bad_cases(intake)
    repo = DatasetRepository.create(root / "dataset", root / "remote")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "pipeline-root"))
    result = data_steps(intake=str(intake), dataset=str(repo.root), cache=str(root / "cache"))
    return root, repo, planted, result


def test_data_steps_version_the_accepted_cases_and_split_them(run):
    root, repo, planted, result = run
    assignment = json.loads(open(result.output.path).read())
    assert sorted(assignment) == [f"case-{i:05d}" for i in range(6)]
    assert assignment == repo.split_at("HEAD") and "test" in assignment.values()
    assert repo.version()["cases"] == 6 and len(list((root / "cache").glob("*.npz"))) == 6


def test_rejected_cases_are_reported_with_reasons(run):
    root, _, planted, _ = run
    reports = list((root / "pipeline-root").glob("data-steps-*/ingest/rejected"))
    text = reports[0].read_text()
    assert "6 added, 0 already present, 5 rejected" in text
    for case_id, reason in planted.items():
        assert f"| {case_id} | " in text and reason in text
