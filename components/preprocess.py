"""Step 2: the dataset version's manifest, every case preprocessed into the shared cache (keyed by
case content and preprocessing parameters, so unchanged cases are never preprocessed again)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess(dataset: str, dataset_version: str, cache: str, config: str, lungs: Input[Model], manifest: Output[Dataset]) -> int:
    """Returns how many cases the cache did not hold yet."""
    import json

    from ctscreen.dataset.repository import DatasetRepository
    from ctscreen.manifest import read_manifest
    from ctscreen.training.cases import cache_path, prepare_cases
    from components import training_config

    version = json.loads(dataset_version)
    DatasetRepository.open(dataset).manifest_at(version["git_rev"], manifest.path)
    config = training_config(config, lungs)
    new = sum(not cache_path(row, cache, config.preprocessing).exists() for row in read_manifest(manifest.path))
    prepare_cases(manifest.path, cache, config.preprocessing, lung_region=config.lung_region())
    manifest.metadata.update({"cases": str(version["cases"]), "git_rev": version["git_rev"], "data_md5": str(version["data_md5"])})
    return new
