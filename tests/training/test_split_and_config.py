"""Patient-level stratified splits and the training configuration."""

from __future__ import annotations

import pytest

from ctscreen.errors import InputError
from ctscreen.training.config import load_config
from ctscreen.training.split import extend_split, split_by_patient


def _rows():
    rows = []
    for i in range(60):
        site = ["a", "b", "c"][i % 3]
        label = "positive" if i % 2 else "negative"
        rows.append({"case_id": f"c{i}", "patient_id": f"p{i // 2 if i < 20 else i}", "site": site, "label": label})
    return rows


def test_split_keeps_patients_together_and_strata_balanced():
    rows = _rows()
    assignment = split_by_patient(rows, seed=0)
    by_patient = {}
    for row in rows:
        by_patient.setdefault(row["patient_id"], set()).add(assignment[row["case_id"]])
    assert all(len(sets) == 1 for sets in by_patient.values())
    for site in "abc":
        for label in ("positive", "negative"):
            members = [assignment[r["case_id"]] for r in rows if r["site"] == site and r["label"] == label]
            assert {"train", "validation", "test"} <= set(members) or len(members) < 5
    counts = {name: list(assignment.values()).count(name) for name in ("train", "validation", "test")}
    assert counts["train"] > counts["validation"] > 0 and counts["test"] > 0


def test_split_is_deterministic_and_holds_out_a_site():
    rows = _rows()
    assert split_by_patient(rows, seed=3) == split_by_patient(rows, seed=3)
    held = split_by_patient(rows, seed=3, held_out_site="b")
    assert {held[r["case_id"]] for r in rows if r["site"] == "b"} == {"test-b"}
    assert "test-b" not in {held[r["case_id"]] for r in rows if r["site"] != "b"}
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_patient(rows, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="'nowhere' has no case"):
        split_by_patient(rows, held_out_site="nowhere")


def test_config_defaults_are_the_papers_and_overrides_apply(tmp_path):
    config = load_config()
    assert config.preprocessing.spacing_zyx == (2.5, 1.0, 1.0)
    assert load_config(None, ["spacing_zyx=[5, 2, 2]"]).preprocessing.spacing_zyx == (5.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="three positive sizes"):
        load_config(None, ["spacing_zyx=[5, 0, 2]"]).preprocessing
    assert config.segmentation.optimiser.lr == 1e-4 and config.segmentation.optimiser.weight_decay == 5e-4
    assert config.segmentation.models == ["fcn8s", "unet", "vnet", "unetpp"]
    assert config.classification.models == ["resnet50", "dpn92", "inception_v3", "attention_resnet50"]
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  segmentation:\n    optimiser: {epochs: 7}\n")
    config = load_config(params, ["segmentation.optimiser.lr=0.001", "classification.models=[resnet50]"])
    assert config.segmentation.optimiser.epochs == 7 and config.segmentation.optimiser.lr == 0.001
    assert config.classification.models == ["resnet50"]


@pytest.mark.parametrize("override, problem", [
    ("segmentation.epochs=3", "unknown setting"),
    ("segmentation.optimiser.epochs=many", "must be int"),
    ("nonsense", "section.key=value"),
])
def test_bad_overrides_are_named(override, problem):
    with pytest.raises(InputError, match=problem):
        load_config(None, [override])


def test_extending_a_split_freezes_the_test_set_and_keeps_patients_together():
    rows = _rows()
    first, later = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    frozen = split_by_patient(first, seed=1)
    test_patient = next(r for r in first if frozen[r["case_id"]] == "test")
    train_patient = next(r for r in first if frozen[r["case_id"]] == "train")
    revisits = [{**test_patient, "case_id": "revisit-test"}, {**train_patient, "case_id": "revisit-train"}]
    assert extend_split({}, first, seed=1) == split_by_patient(first, seed=1)  # the first cases create the test set
    extended = extend_split(frozen, rows + revisits, seed=1)
    assert {k: v for k, v in extended.items() if k in frozen} == frozen
    assert {extended[r["case_id"]] for r in later} <= {"train", "validation"}
    assert {extended[r["case_id"]] for r in later} == {"train", "validation"}
    assert extended["revisit-test"] == "excluded" and extended["revisit-train"] == "train"


def test_the_first_split_follows_its_fractions_and_later_cases_keep_their_proportion():
    rows = _rows()
    first, later = rows[:40], rows[40:]
    frozen = extend_split({}, first, seed=2, fractions=(0.3, 0.2, 0.5))
    assert sum(v == "test" for v in frozen.values()) == pytest.approx(20, abs=2)  # a large frozen test set
    extended = extend_split(frozen, rows, seed=2, fractions=(0.3, 0.2, 0.5))
    new = [extended[r["case_id"]] for r in later]
    assert "test" not in new and new.count("train") == pytest.approx(12, abs=1)  # 3 : 2, as train : validation


@pytest.mark.parametrize("fractions", [(0.6, 0.4), (0.5, 0.2, 0.2), (1.0, 0.0, 0.0), (-0.2, 0.6, 0.6)])
def test_split_fractions_that_cannot_split_are_refused(fractions):
    with pytest.raises(ValueError, match="split fractions must be three"):
        split_by_patient(_rows(), fractions=fractions)
