"""Step 4: one segmentation candidate trained on the split's training set, scored by validation
Dice (the pipeline fans this out over every configured model with ``dsl.ParallelFor``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_segmentation(name: str, manifest: Input[Dataset], assignment: Input[Dataset], cache: str, config: str,
                       lungs: Input[Model], model: Output[Model]) -> float:
    """Returns the best validation Dice (-1 when validation had no lesion to score)."""
    import json
    from dataclasses import asdict
    from pathlib import Path

    from components import training_config
    from ctscreen.training.pairs import load_sets
    from ctscreen.training.segmentation import train_segmentation as train

    config = training_config(config, lungs)
    sets = load_sets(manifest.path, assignment.path, cache, config)
    run = train(name, sets["train"], sets["validation"], config.segmentation, model.path, config.seed)
    dice = run.best_metric if run.best_metric is not None else -1.0
    (Path(model.path) / "history.json").write_text(json.dumps([asdict(e) for e in run.history]))
    model.metadata.update({"name": name, "validation_dice": dice, "checkpoint": str(run.checkpoint.relative_to(model.path))})
    return dice
