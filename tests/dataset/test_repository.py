import json
import secrets
import subprocess
import sys

import pytest

from ctscreen.dataset.intake import check_intake
from ctscreen.dataset.repository import DatasetError, DatasetRepository
from ctscreen.dataset.synthetic import synthetic_intake
from ctscreen.errors import InputError
from ctscreen.manifest import read_manifest

KEY = secrets.token_bytes(32)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    root = tmp_path_factory.mktemp("arrivals")
    first = check_intake(synthetic_intake(root / "first", cases=5, key=KEY, profile="tiny", progress=False).parent)
    second = check_intake(synthetic_intake(root / "second", cases=3, key=KEY, profile="tiny", progress=False, first=5).parent)
    return first.accepted, second.accepted


def test_adding_cases_versions_them_and_freezes_the_test_set(tmp_path, batches):
    repo = DatasetRepository.create(tmp_path / "dataset", tmp_path / "remote")
    empty = repo.version()
    one = repo.add_cases(batches[0])
    assert one["added"] == [r["case_id"] for r in batches[0]] and one["version"]["cases"] == 5
    assert one["version"]["git_rev"] != empty["git_rev"] and one["version"]["data_md5"].endswith(".dir")
    assert repo.add_cases(batches[0]) == {"version": one["version"], "added": [], "skipped": one["added"]}
    two = repo.add_cases(batches[1])
    assert two["version"]["data_md5"] != one["version"]["data_md5"] and two["version"]["cases"] == 8
    first_split, second_split = repo.split_at(one["version"]["git_rev"]), repo.split_at("HEAD")
    assert "test" in first_split.values()
    assert {k: v for k, v in second_split.items() if v == "test"} == {k: v for k, v in first_split.items() if v == "test"}
    # an old version is still exactly what it was, read against today's case store
    old = read_manifest(repo.manifest_at(one["version"]["git_rev"], tmp_path / "old.csv"))
    assert [r["case_id"] for r in old] == one["added"]
    assert all(r["content_digest"] for r in old)
    # the data went to the DVC remote
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-c"], cwd=repo.root, capture_output=True, text=True)
    assert "in sync" in status.stdout


def test_a_case_id_with_other_content_is_refused_and_nothing_changes(tmp_path, batches):
    repo = DatasetRepository.create(tmp_path / "dataset", tmp_path / "remote")
    before = repo.add_cases(batches[0][:2])["version"]
    impostor = {**batches[1][0], "case_id": batches[0][0]["case_id"]}
    with pytest.raises(InputError, match="already in the dataset with other content"):
        repo.add_cases([impostor])
    assert repo.version() == before


def test_a_failed_push_leaves_the_dataset_as_it_was(tmp_path, batches):
    repo = DatasetRepository.create(tmp_path / "dataset", tmp_path / "remote")
    before = repo.add_cases(batches[0][:2])["version"]
    manifest = (repo.root / "manifest.csv").read_text()
    subprocess.run([sys.executable, "-m", "dvc", "remote", "modify", "storage", "url", "/proc/version/nowhere"], cwd=repo.root, check=True)
    with pytest.raises(DatasetError, match="dvc push"):
        repo.add_cases(batches[1])
    assert repo.version() == before and (repo.root / "manifest.csv").read_text() == manifest
    assert not any((repo.root / "cases" / r["case_id"]).exists() for r in batches[1])  # nothing left for the next add to pick up


def test_two_writers_at_once_both_land_without_corrupting_the_dataset(tmp_path, batches):
    repo = DatasetRepository.create(tmp_path / "dataset", tmp_path / "remote")
    script = (
        "import json, sys\n"
        "from ctscreen.dataset.repository import DatasetRepository\n"
        "rows = json.loads(sys.argv[2])\n"
        "DatasetRepository.open(sys.argv[1]).add_cases(rows)\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(repo.root), json.dumps(rows)])
               for rows in (batches[0], batches[1])]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    assert repo.version()["cases"] == 8
    assert sorted(r["case_id"] for r in read_manifest(repo.root / "manifest.csv")) == sorted(r["case_id"] for b in batches for r in b)
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo.root, capture_output=True, text=True).stdout == ""


def test_opening_a_folder_that_is_no_dataset_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a ctscreen dataset repository"):
        DatasetRepository.open(tmp_path)


def test_a_dataset_keeps_the_fractions_that_size_its_frozen_test_set(tmp_path, batches):
    repo = DatasetRepository.create(tmp_path / "dataset", tmp_path / "remote", split_fractions=(0.2, 0.2, 0.6))
    assert DatasetRepository.open(repo.root).split_fractions() == (0.2, 0.2, 0.6)
    repo.add_cases(batches[0])
    first = repo.split_at("HEAD")
    assert sum(v == "test" for v in first.values()) == 3  # 60 % of the five first cases
    repo.add_cases(batches[1])
    assert {v for k, v in repo.split_at("HEAD").items() if k not in first} <= {"train", "validation"}
    with pytest.raises(InputError, match="split fractions must be three"):
        DatasetRepository.create(tmp_path / "other", tmp_path / "remote", split_fractions=(0.5, 0.5, 0.5))
    (repo.root / "dataset.yaml").write_text("split_fractions: [0.5, 0.5]\n")
    with pytest.raises(InputError, match="dataset.yaml.*cannot read the dataset's split fractions"):
        repo.split_fractions()
