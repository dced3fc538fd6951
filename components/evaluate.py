"""Step 6: the classifiers paired with the selected segmenter evaluated on every set through the one
evaluator, the winner chosen by validation AUC, its figures on the frozen test set (Figure 2a/2c
style, calibration) and its bundle. These figures are the ones the gate decides on and the registry keeps."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(segmentation: Input[Model], classifiers: Input[List[Model]], segmented: Input[Dataset], manifest: Input[Dataset],
             assignment: Input[Dataset], cache: str, config: str, lungs: Input[Model], dataset_version: str,
             bundle: Output[Model], evaluation: Output[Dataset], metrics: Output[Metrics], report: Output[Markdown]) -> str:
    """Returns the run's summary (winner, test figures, split sizes) as JSON; ``evaluation`` holds the
    comparison table, the figures and ``results.json``."""
    import json
    import shutil
    from pathlib import Path

    from components import record_metrics, training_config
    from ctscreen.evaluation.evaluator import SegmentedCases, headline
    from ctscreen.training.cases import prepare_cases
    from ctscreen.training.pairs import evaluate_pair, load_trained, report_pairs, segmented_sets

    config = training_config(config, lungs)
    sets = segmented_sets(SegmentedCases.open(segmented.path), json.loads(Path(assignment.path).read_text()))
    seg_name = segmentation.metadata["name"]
    segmenter = load_trained(seg_name, config.segmentation.profile, Path(segmentation.path) / segmentation.metadata["checkpoint"])
    evaluated = [
        evaluate_pair((seg_name, segmenter),
                      (c.metadata["name"], load_trained(c.metadata["name"], config.classification.profile, Path(c.path) / c.metadata["checkpoint"])),
                      c.metadata["validation_auc"], sets, config)
        for c in classifiers
    ]
    summary = report_pairs(evaluated, {seg_name: segmentation.metadata["validation_dice"]}, sets, config, evaluation.path,
                           {"training_config": config.to_dict(), "dataset_version": json.loads(dataset_version),
                            "lung_region": dict(lungs.metadata)},
                           lambda ids: prepare_cases(manifest.path, cache, config.preprocessing, set(ids), progress=False,
                                                     lung_region=config.lung_region()))
    summary["segmentation_validation_dice"] = segmentation.metadata["candidates"]
    shutil.move(summary["bundle"], bundle.path)
    summary["bundle"] = bundle.path
    (Path(evaluation.path) / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    bundle.metadata.update({"pair": f"{summary['winner']['segmentation']} -> {summary['winner']['classification']}",
                            "threshold": summary["winner"]["threshold"]})
    record_metrics(metrics, {f"{name}_{key}": value for name, figures in summary["test"].items() for key, value in headline(figures).items()})
    Path(report.path).write_text(Path(summary["comparison"]["markdown"]).read_text())
    return json.dumps(summary, default=str)
