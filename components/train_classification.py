"""Step 5: one classification candidate trained on the selected segmenter's maps, scored by
validation AUC (fanned out over every configured classifier with ``dsl.ParallelFor``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_classification(name: str, segmentation: Input[Model], segmented: Input[Dataset], assignment: Input[Dataset], config: str,
                         model: Output[Model]) -> float:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from ctscreen.evaluation.evaluator import SegmentedCases
    from ctscreen.training.classification import train_classification as train
    from ctscreen.training.config import TrainingConfig, from_settings
    from ctscreen.training.pairs import segmented_sets

    config = from_settings(TrainingConfig, json.loads(config))
    sets = segmented_sets(SegmentedCases.open(segmented.path), json.loads(Path(assignment.path).read_text()))
    run = train(name, sets["train"], sets["validation"], config.classification, model.path, config.seed)
    auc = run.best_metric if run.best_metric is not None else -1.0
    (Path(model.path) / "history.json").write_text(json.dumps([asdict(e) for e in run.history]))
    model.metadata.update({"name": name, "segmentation": segmentation.metadata["name"], "validation_auc": auc,
                           "checkpoint": str(run.checkpoint.relative_to(model.path))})
    return auc
