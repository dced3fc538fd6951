"""Train and compare the segmentation -> classification pairs, and pick the winner as the paper did:
the segmentation model with the best validation Dice, then the classifier with the best validation
AUC when paired with it, the lower validation Brier score breaking a tie (on a few dozen validation
cases several classifiers reach AUC 1.0; ``full_grid`` pairs every classifier with every segmentation model)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch

from ctscreen.errors import InputError
from ctscreen.evaluation.calibration import brier_score
from ctscreen.evaluation.classification import threshold_for_sensitivity
from ctscreen.evaluation.evaluator import SegmentedCases, figures, scores, segment
from ctscreen.evaluation.report import plot_examples, plot_reliability_diagram, plot_roc_curves, write_table
from ctscreen.inference.bundle import save_bundle
from ctscreen.inference.pair import lesion_mask
from ctscreen.inference.sliding_window import lesion_probability
from ctscreen.manifest import read_manifest
from ctscreen.models import build_model
from ctscreen.training.cases import CachedCase, prepare_cases
from ctscreen.training.classification import input_size, train_classification
from ctscreen.training.config import TrainingConfig
from ctscreen.training.loop import TrainingResult
from ctscreen.training.segmentation import patch_size, train_segmentation
from ctscreen.training.split import FRACTIONS, split_by_patient


def load_trained(name: str, profile: str, checkpoint: Path) -> torch.nn.Module:
    model = build_model(name, profile)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
    return model.eval()


def prepare_sets(manifest: str | Path, out_dir: str | Path, config: TrainingConfig, cache_dir: str | Path | None = None,
                 held_out_site: str | None = None, progress: bool = True,
                 split_fractions: tuple[float, float, float] = FRACTIONS) -> tuple[list[CachedCase], dict[str, list[CachedCase]]]:
    """Preprocessed cases grouped by split; a run folder's ``split.json`` is reused, so steps run one
    after another (``train seg``, then ``train cls``) see the same sets. A new run folder's cases (the
    held-out site's aside) are split by ``split_fractions`` (train, validation, test)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_file = out_dir / "split.json"
    if split_file.exists():
        assignment = json.loads(split_file.read_text())
    else:
        assignment = split_by_patient(read_manifest(manifest), split_fractions, seed=config.seed, held_out_site=held_out_site)
        split_file.write_text(json.dumps(assignment, indent=1, sort_keys=True))
    cases = prepare_cases(manifest, cache_dir or out_dir / "cache", config.preprocessing, progress=progress, lung_region=config.lung_region())
    return cases, group_by_split(cases, assignment, split_file)


def group_by_split(cases: list[CachedCase], assignment: dict[str, str], source: Path) -> dict[str, list[CachedCase]]:
    """Cases by set name; every case must be placed, and training and validation need both labels."""
    missing = sorted(c.case_id for c in cases if c.case_id not in assignment)
    if missing:
        raise ValueError(f"{source} does not place {len(missing)} case(s) ({', '.join(missing[:3])}...): use a new --out")
    sets: dict[str, list[CachedCase]] = defaultdict(list)
    for case in cases:
        sets[assignment[case.case_id]].append(case)
    for name in ("train", "validation"):
        if len({c.label for c in sets[name]}) < 2:
            counts = {k: f"{sum(c.label for c in v)} positive / {sum(1 - c.label for c in v)} negative" for k, v in sets.items()}
            raise ValueError(f"the {name} split needs positive and negative cases; the split gave {counts}: add cases")
    return sets


def train_segmentation_candidates(sets: dict[str, list[CachedCase]], config: TrainingConfig, out_dir: str | Path,
                                  progress: bool = True) -> dict:
    """Every configured segmentation model (a finished checkpoint is reused), ranked by validation Dice;
    one after another, so the median stopping rule can weigh each against those before it."""
    runs: dict[str, TrainingResult] = {}
    for name in config.segmentation.models:
        runs[name] = train_segmentation(name, sets["train"], sets["validation"], config.segmentation, Path(out_dir) / "segmentation",
                                        config.seed, progress, peers=[r.history for r in runs.values()])
    results = Path(out_dir) / "segmentation" / "results.json"
    summary = json.loads(results.read_text()) if results.exists() else {}  # candidates trained earlier in this run folder stay listed
    summary.update({name: {"validation_dice": run.best_metric, "best_epoch": run.best_epoch, "checkpoint": str(run.checkpoint)}
                    for name, run in runs.items()})
    results.write_text(json.dumps(summary, indent=2))
    return runs


def best_segmentation(out_dir: str | Path) -> str:
    """The segmentation candidate of a run folder with the best validation Dice (``train seg`` ranked them)."""
    results = Path(out_dir) / "segmentation" / "results.json"
    if not results.exists():
        raise InputError(results, "no segmentation results: run `ctscreen train seg` on this --out first")
    ranked = json.loads(results.read_text())
    return max(ranked, key=lambda n: ranked[n]["validation_dice"] if ranked[n]["validation_dice"] is not None else -1.0)


def load_sets(manifest: str | Path, assignment: str | Path, cache: str | Path, config: TrainingConfig) -> dict[str, list[CachedCase]]:
    """The cases of ``manifest`` (preprocessed through ``cache``) grouped by the split file ``assignment``."""
    return group_by_split(prepare_cases(manifest, cache, config.preprocessing, progress=False, lung_region=config.lung_region()),
                          json.loads(Path(assignment).read_text()), Path(assignment))


def segmented_sets(segmented: SegmentedCases, assignment: dict[str, str]) -> dict[str, SegmentedCases]:
    """The segmented cases grouped by the split's set names (sets without a case left out)."""
    names = sorted({assignment[c] for c in segmented.case_ids})
    return {name: segmented.select(c for c in segmented.case_ids if assignment[c] == name) for name in names}


def test_set_names(sets: dict) -> list[str]:
    return sorted(k for k in sets if k.startswith("test") and len(sets[k]))


def evaluate_pair(segmentation: tuple[str, torch.nn.Module], classification: tuple[str, torch.nn.Module], val_auc: float | None,
                  sets: dict[str, SegmentedCases], config: TrainingConfig) -> dict:
    """One trained pair through the evaluator: the threshold chosen on validation, every test set's figures at it."""
    scored = {k: scores(classification[1], sets[k]) for k in ("validation", *test_set_names(sets))}
    threshold = threshold_for_sensitivity(sets["validation"].labels, scored["validation"], config.evaluation.target_sensitivity)
    return {
        "names": (segmentation[0], classification[0]), "segmenter": segmentation[1], "classifier": classification[1],
        "scores": scored, "threshold": threshold, "val_auc": val_auc if val_auc is not None else -1.0,
        "val_brier": brier_score(sets["validation"].labels, scored["validation"]),
        "results": {k: figures(sets[k], scored[k], threshold, config.evaluation.bootstrap_resamples) for k in test_set_names(sets)},
    }


def run_pairs(manifest: str | Path, out_dir: str | Path, config: TrainingConfig, cache_dir: str | Path | None = None,
              held_out_site: str | None = None, full_grid: bool = False, progress: bool = True,
              split_fractions: tuple[float, float, float] = FRACTIONS) -> dict:
    out_dir = Path(out_dir)
    cases, sets = prepare_sets(manifest, out_dir, config, cache_dir, held_out_site, progress, split_fractions)
    assignment = {c.case_id: name for name, members in sets.items() for c in members}
    patch, size = patch_size(config.segmentation), input_size(config.classification)

    segmentation_runs = train_segmentation_candidates(sets, config, out_dir, progress)
    dice = {n: r.best_metric for n, r in segmentation_runs.items()}
    ranked = sorted(dice, key=lambda n: dice[n] or -1.0, reverse=True)
    evaluated = []
    for seg_name in ranked if full_grid else ranked[:1]:
        segmenter = load_trained(seg_name, config.segmentation.profile, segmentation_runs[seg_name].checkpoint)
        segmented = segmented_sets(segment(segmenter, cases, patch, size, out_dir / "segmented" / seg_name, progress,
                                           f"segment with {seg_name}"), assignment)
        peers = []  # the classifiers trained on this segmenter's output so far, for the median stopping rule
        for cls_name in config.classification.models:
            run = train_classification(cls_name, segmented["train"], segmented["validation"], config.classification,
                                       out_dir / "classification" / seg_name, config.seed, progress, peers=peers)
            peers.append(run.history)
            classifier = load_trained(cls_name, config.classification.profile, run.checkpoint)
            evaluated.append(evaluate_pair((seg_name, segmenter), (cls_name, classifier), run.best_metric, segmented, config))
    by_id = {c.case_id: c for c in cases}
    return report_pairs(evaluated, dice, segmented, config, out_dir, {"training_config": config.to_dict(), "manifest": str(manifest)},
                        lambda ids: [by_id[i] for i in ids])


def winning_pair(evaluated: list[dict], segmentation_dice: dict[str, float | None]) -> dict:
    """The paper's rule: the segmenter with the best validation Dice, then of its pairs the one with
    the best validation AUC, the lower validation Brier score breaking a tie."""
    chosen_seg = max(segmentation_dice, key=lambda n: segmentation_dice[n] or -1.0)
    return max((p for p in evaluated if p["names"][0] == chosen_seg), key=lambda p: (p["val_auc"], -p["val_brier"]))


def report_pairs(evaluated: list[dict], segmentation_dice: dict[str, float | None], sets: dict[str, SegmentedCases],
                 config: TrainingConfig, out_dir: str | Path, provenance: dict,
                 load_cases: Callable[[list[str]], list[CachedCase]]) -> dict:
    """Select as the paper did (best validation Dice, then best validation AUC with it, the lower
    validation Brier score breaking a tie), write the comparison table, the Figure-2-style plots, the
    winner's reliability diagrams and its bundle;
    returns the run's summary. ``load_cases`` gives the preprocessed cases of the example figures."""
    out_dir = Path(out_dir)
    tests = test_set_names(sets)
    best = winning_pair(evaluated, segmentation_dice)
    chosen_seg = best["names"][0]
    rows = [{
        "segmentation": p["names"][0], "classification": p["names"][1], "val_dice": segmentation_dice[p["names"][0]],
        "val_auc": p["val_auc"], "val_brier": p["val_brier"], "threshold": p["threshold"],
        **{f"{k}_{m}": p["results"][k][m] for k in tests for m in ("auc", "sensitivity", "specificity", "lesion_dice")},
        **{f"{k}_ece": p["results"][k]["calibration"]["ece"] for k in tests},
    } for p in evaluated]
    table_csv, table_md = write_table(rows, out_dir / "comparison")
    plots = {}
    for k in tests:
        curves = {p["names"][1]: (sets[k].labels, p["scores"][k]) for p in evaluated if p["names"][0] == chosen_seg}
        plots[f"roc_classifiers_{k}"] = str(plot_roc_curves(curves, out_dir / f"figure2a_roc_classifiers_{k}.png",
                                                            f"classifiers paired with {chosen_seg} ({k})"))
        plots[f"examples_{k}"] = str(plot_examples(_examples(sets[k], best, k, load_cases, patch_size(config.segmentation)),
                                                   out_dir / f"figure2c_examples_{k}.png"))
        plots[f"reliability_{k}"] = str(plot_reliability_diagram(best["results"][k]["calibration"], out_dir / f"reliability_{k}.png",
                                                                 f"{' -> '.join(best['names'])} ({k})"))
    metrics = {k: {m: v for m, v in best["results"][k].items() if m != "scores"} for k in tests}
    winner_scores = {k: {"case_ids": sets[k].case_ids, "labels": sets[k].labels.tolist(),
                         "scores": [round(float(v), 6) for v in best["scores"][k]]} for k in tests}
    (out_dir / "scores.json").write_text(json.dumps(winner_scores))  # the winner's ROC per stage (Figure 2b) comes from these
    bundle = save_bundle(
        out_dir / "bundle", best["segmenter"],
        {"name": best["names"][0], "profile": config.segmentation.profile, "patch_zyx": list(patch_size(config.segmentation))},
        best["classifier"],
        {"name": best["names"][1], "profile": config.classification.profile, "input_zyx": list(input_size(config.classification))},
        config.preprocessing, best["threshold"], metrics, provenance, lungs=config.lung_model,
    )
    summary = {
        "winner": {"segmentation": best["names"][0], "classification": best["names"][1], "threshold": best["threshold"]},
        "segmentation_validation_dice": segmentation_dice,
        "test": metrics,
        "split": {k: len(v) for k, v in sets.items()},
        "comparison": {"csv": str(table_csv), "markdown": str(table_md)},
        "figures": plots,
        "scores": str(out_dir / "scores.json"),
        "bundle": str(bundle.root),
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _examples(segmented: SegmentedCases, pair: dict, test_set: str, load_cases: Callable[[list[str]], list[CachedCase]],
              patch: tuple[int, int, int]) -> list[dict]:
    """One test case of each outcome the physician meets: true/false positive/negative."""
    case_scores, threshold = pair["scores"][test_set], pair["threshold"]
    chosen: dict[str, tuple[str, float]] = {}
    for record, score in zip(segmented.records, case_scores):
        outcome = ("true " if (score >= threshold) == bool(record["label"]) else "false ") + ("positive" if score >= threshold else "negative")
        chosen.setdefault(outcome, (record["case_id"], float(score)))
    cases = {c.case_id: c.load() for c in load_cases([case_id for case_id, _ in chosen.values()])}
    examples = []
    for outcome in sorted(chosen):
        case = cases[chosen[outcome][0]]
        examples.append({"title": f"{outcome}: {case.case_id} ({case.subtype}), p={chosen[outcome][1]:.2f}", "image": case.image,
                         "truth": case.lesion_mask > 0,
                         "prediction": lesion_mask(lesion_probability(pair["segmenter"], case.image, patch), case.lung_mask)})
    return examples
