"""Training and comparing the pairs end to end, selected as in the paper, on synthetic data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ctscreen.inference.bundle import load_bundle
from ctscreen.training.pairs import winning_pair


def test_every_pair_is_compared_and_the_winner_follows_the_papers_rule(trained_pairs):
    summary, run = trained_pairs["summary"], trained_pairs["root"] / "run"
    rows = list(csv.DictReader(open(run / "comparison.csv")))
    dice = summary["segmentation_validation_dice"]
    chosen_seg = max(dice, key=dice.get)
    assert {r["segmentation"] for r in rows} == {chosen_seg}  # without --full-grid, classifiers pair with the best segmenter
    assert {r["classification"] for r in rows} == {"resnet50", "inception_v3"}
    best_cls = max(rows, key=lambda r: float(r["val_auc"] or -1))["classification"]
    assert summary["winner"] == {"segmentation": chosen_seg, "classification": best_cls, "threshold": summary["winner"]["threshold"]}
    assert (run / "comparison.md").read_text().startswith("| segmentation | classification |")


def test_held_out_site_is_reported_separately(trained_pairs):
    summary, held_out = trained_pairs["summary"], trained_pairs["held_out"]
    split = json.loads((trained_pairs["root"] / "run" / "split.json").read_text())
    held = [case for case, name in split.items() if name == f"test-{held_out}"]
    assert held and f"test-{held_out}" in summary["test"]
    result = summary["test"][f"test-{held_out}"]
    assert result["cases"] == len(held)
    assert set(result["by_site"]) == {held_out}
    for name in ("test", f"test-{held_out}"):
        for key in ("auc", "auc_ci95", "sensitivity", "specificity", "tp", "fp", "tn", "fn", "lesion_dice", "false_positives_by_negative_subtype",
                    "calibration"):
            assert key in summary["test"][name]


def test_figures_and_bundle_are_written(trained_pairs):
    summary = trained_pairs["summary"]
    for path in summary["figures"].values():
        assert Path(path).stat().st_size > 5_000
    bundle = load_bundle(summary["bundle"])
    assert bundle.name == f"{summary['winner']['segmentation']}+{summary['winner']['classification']}"
    assert bundle.threshold == summary["winner"]["threshold"]
    assert bundle.preprocessing.window == "lesion"
    assert (bundle.root / "segmentation.onnx").exists() and (bundle.root / "classification.onnx").exists()
    seg, cls = bundle.networks()
    assert sum(p.numel() for p in seg.parameters()) > 0 and sum(p.numel() for p in cls.parameters()) > 0


def test_preprocessing_cache_is_reused(trained_pairs):
    cache = trained_pairs["root"] / "run" / "cache"
    entries = sorted(cache.glob("*.npz"))
    assert len(entries) == 18
    stamps = [p.stat().st_mtime_ns for p in entries]
    from ctscreen.training.cases import prepare_cases

    config = trained_pairs["config"]
    again = prepare_cases(trained_pairs["manifest"], cache, config.preprocessing, progress=False, lung_region=config.lung_region())
    assert len(again) == 18 and [p.stat().st_mtime_ns for p in sorted(cache.glob("*.npz"))] == stamps


def test_the_cases_are_preprocessed_with_the_lung_model_the_bundle_carries(trained_pairs, tmp_path):
    """The pair learned on the lung-region model's lungs; its bundle carries that model and finds
    the lungs with it, and the cache keys the lungs by the model, so the classical extraction's
    preprocessing is another cache entry, never this one."""
    from ctscreen.digests import file_sha256
    from ctscreen.inference.bundle import load_bundle
    from ctscreen.training.cases import prepare_cases

    config = trained_pairs["config"]
    bundle = load_bundle(trained_pairs["summary"]["bundle"])
    assert bundle.preprocessing.lung_model == file_sha256(Path(config.lung_model) / "lung_region.pt") == config.preprocessing.lung_model
    assert (bundle.lungs / "lung_region.onnx").is_file() and bundle.lung_region().digest == bundle.preprocessing.lung_model
    cached = prepare_cases(trained_pairs["manifest"], trained_pairs["root"] / "run" / "cache", config.preprocessing, progress=False,
                           lung_region=config.lung_region())
    case = cached[0].load()
    classical = prepare_cases(trained_pairs["manifest"], tmp_path / "cache", progress=False, case_ids={cached[0].case_id})[0]
    assert classical.path != cached[0].path
    with pytest.raises(ValueError, match="lung-region model"):
        prepare_cases(trained_pairs["manifest"], tmp_path / "other", config.preprocessing, progress=False)
    assert case.lung_mask.any() and case.lung_mask.shape == case.image.shape


def test_evaluate_cli_reproduces_the_test_figures(trained_pairs, tmp_path):
    import subprocess
    import sys

    run = trained_pairs["root"] / "run"
    result = subprocess.run([sys.executable, "-m", "ctscreen.cli", "evaluate", "--bundle", str(run / "bundle"),
                             "--manifest", str(trained_pairs["manifest"]), "--split", str(run / "split.json"),
                             "--cache", str(run / "cache"), "--out", str(tmp_path), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    expected = trained_pairs["summary"]["test"]["test"]
    assert report["cases"] == expected["cases"]
    for key in ("auc", "sensitivity", "specificity", "tp", "fp", "tn", "fn"):
        assert report[key] == expected[key]
    assert report["by_site"].keys() == expected["by_site"].keys()
    # another process may sum in another order: a voxel near p = 0.5 can flip, a score move in its 7th digit
    assert report["lesion_dice"] == pytest.approx(expected["lesion_dice"], abs=0.02)
    assert report["calibration"]["brier"] == pytest.approx(expected["calibration"]["brier"], abs=1e-4)
    assert report["calibration"]["ece"] == pytest.approx(expected["calibration"]["ece"], abs=1e-4)
    assert (tmp_path / "roc.png").exists() and (tmp_path / "reliability.png").exists()


@pytest.mark.parametrize("pairs, winner", [
    ([("unet", "resnet50", 0.9, 0.10), ("unet", "dpn92", 0.95, 0.20), ("fcn8s", "dpn92", 1.0, 0.01)], "dpn92"),  # best AUC with the best segmenter
    ([("unet", "resnet50", 1.0, 0.11), ("unet", "attention_resnet50", 1.0, 0.08)], "attention_resnet50"),  # a tie: the lower Brier score
])
def test_the_winner_is_the_best_segmenter_s_best_classifier_with_ties_broken_by_brier(pairs, winner):
    evaluated = [{"names": (seg, cls), "val_auc": auc, "val_brier": brier} for seg, cls, auc, brier in pairs]
    assert winning_pair(evaluated, {"unet": 0.44, "fcn8s": 0.16})["names"] == ("unet", winner)
