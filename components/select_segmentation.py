"""Step 4b: the segmentation candidate with the best validation Dice, and its lesion probability
maps of every case (what the classifiers train on)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def select_segmentation(candidates: Input[List[Model]], manifest: Input[Dataset], cache: str, config: str,
                        chosen: Output[Model], maps: Output[Dataset]) -> str:
    import json
    import shutil
    from pathlib import Path

    from ctscreen.training.cases import prepare_cases
    from ctscreen.training.config import TrainingConfig, from_settings
    from ctscreen.training.pairs import load_trained, save_maps, segment_cases
    from ctscreen.training.segmentation import patch_size

    config = from_settings(TrainingConfig, json.loads(config))
    best = max(candidates, key=lambda m: m.metadata["validation_dice"])
    shutil.copytree(best.path, chosen.path)
    chosen.metadata.update(best.metadata)
    chosen.metadata["candidates"] = {m.metadata["name"]: m.metadata["validation_dice"] for m in candidates}
    segmenter = load_trained(best.metadata["name"], config.segmentation.profile, Path(chosen.path) / best.metadata["checkpoint"])
    cases = prepare_cases(manifest.path, cache, config.preprocessing, progress=False)
    save_maps(segment_cases(segmenter, cases, patch_size(config.segmentation), progress=False), maps.path)
    return best.metadata["name"]
