"""Step 4b: the segmentation candidate with the best validation Dice, and what it makes of every
case through the evaluator (the classifier inputs the classifiers train and are measured on, and
each case's lesion Dice)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def select_segmentation(candidates: Input[List[Model]], manifest: Input[Dataset], cache: str, config: str,
                        lungs: Input[Model], chosen: Output[Model], segmented: Output[Dataset]) -> str:
    import shutil
    from pathlib import Path

    from components import training_config
    from ctscreen.evaluation.evaluator import segment
    from ctscreen.training.cases import prepare_cases
    from ctscreen.training.classification import input_size
    from ctscreen.training.pairs import load_trained
    from ctscreen.training.segmentation import patch_size

    config = training_config(config, lungs)
    best = max(candidates, key=lambda m: m.metadata["validation_dice"])
    shutil.copytree(best.path, chosen.path)
    chosen.metadata.update(best.metadata)
    chosen.metadata["candidates"] = {m.metadata["name"]: m.metadata["validation_dice"] for m in candidates}
    segmenter = load_trained(best.metadata["name"], config.segmentation.profile, Path(chosen.path) / best.metadata["checkpoint"])
    cases = prepare_cases(manifest.path, cache, config.preprocessing, progress=False, lung_region=config.lung_region())
    segment(segmenter, cases, patch_size(config.segmentation), input_size(config.classification), segmented.path, progress=False)
    return best.metadata["name"]
