"""Step 3: the dataset version's split by patient (stratified by site and label, test set frozen),
with its counts per set, site and label."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def split(dataset: str, dataset_version: str, manifest: Input[Dataset], assignment: Output[Dataset], counts: Output[Metrics]):
    import json
    from collections import Counter

    from components import record_metrics
    from ctscreen.dataset.repository import DatasetRepository
    from ctscreen.manifest import read_manifest

    placed = DatasetRepository.open(dataset).split_at(json.loads(dataset_version)["git_rev"])
    rows = read_manifest(manifest.path)
    unplaced = [r["case_id"] for r in rows if r["case_id"] not in placed]
    if unplaced:
        raise ValueError(f"the dataset's split.json does not place {len(unplaced)} case(s): {', '.join(unplaced[:5])}")
    with open(assignment.path, "w") as fh:
        json.dump({r["case_id"]: placed[r["case_id"]] for r in rows}, fh, indent=1, sort_keys=True)
    tally = Counter((placed[r["case_id"]], r["site"], r["label"]) for r in rows)
    record_metrics(counts, {f"{name}/{site}/{label}": n for (name, site, label), n in sorted(tally.items())})
