"""Step 1b: the lung-region network (the paper's first model) trained on the dataset version's lung
masks, the frozen test sets left out. The later steps find the lungs with it when it reaches the
configured validation lung Dice (``adopt_min_dice``) and keeps the lesions inside
(``adopt_min_lesion_inside``); otherwise they keep the classical extraction, and the step's metadata says so."""

from kfp import dsl
from kfp.dsl import Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_lungs(dataset: str, dataset_version: str, cache: str, lung_config: str, lungs: Output[Model]) -> float:
    """Returns the validation lung Dice."""
    import json
    from pathlib import Path

    from ctscreen.dataset.repository import DatasetRepository
    from ctscreen.manifest import read_manifest, write_manifest
    from ctscreen.training.config import from_settings
    from ctscreen.training.lungs import LungTrainingConfig, train_lung_region

    version = json.loads(dataset_version)
    repository = DatasetRepository.open(dataset)
    placed = repository.split_at(version["git_rev"])
    out = Path(lungs.path)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(repository.manifest_at(version["git_rev"], out / "all-cases.csv"))
    training = [r for r in rows if r.get("lung_mask") and not placed.get(r["case_id"], "test").startswith("test")]
    summary = train_lung_region(write_manifest(training, out / "manifest.csv"), out, from_settings(LungTrainingConfig, json.loads(lung_config)),
                                cache_dir=Path(cache) / "lungs", progress=False)
    lungs.metadata.update({"adopted": summary["adopted"], "validation_dice": summary["validation_dice"],
                           "validation_lesion_inside": summary["validation_lesion_inside"], "model": summary["spec"]["name"],
                           "cases": summary["cases"]})
    return summary["validation_dice"]
