"""Step 8: the run in MLflow — one parent run (parameters, dataset and code versions, environment,
test figures, plots, the bundle) with a nested run per candidate (its per-epoch metrics) — and the
winning bundle registered as a new version with ``challenger``, and ``champion`` when the gate
passed and auto-promotion is on."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(bundle: Input[Model], evaluation: Input[Dataset], segmentation_candidates: Input[List[Model]],
             classification_candidates: Input[List[Model]], summary: str, decision: str, dataset_version: str,
             tracking_uri: str, experiment: str, signing_key: str) -> str:
    """Returns the registered version and the aliases it holds, as JSON. The bundle is registered
    signed (OpenSSF model signing with ``signing_key``): the chain of custody to the edge starts here."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from ctscreen.inference.bundle import bundle_digest
    from ctscreen.inference.signature import sign_bundle
    from ctscreen.registry.models import CHAMPION, ModelRegistry, figure_tags
    from ctscreen.registry.tracking import log_retrain_run

    with tempfile.TemporaryDirectory() as scratch:  # the step's input artifact stays as the cache holds it
        signed = Path(shutil.copytree(bundle.path, Path(scratch) / "bundle"))
        sign_bundle(signed, signing_key)
        run_id = log_retrain_run(tracking_uri, experiment, json.loads(summary), json.loads(decision), json.loads(dataset_version),
                                 signed, evaluation.path,
                                 [(f"segmentation/{m.metadata['name']}", m.path) for m in segmentation_candidates]
                                 + [(f"classification/{m.metadata['name']}", m.path) for m in classification_candidates])
    gate = json.loads(decision)
    registry = ModelRegistry(tracking_uri)
    version = registry.release_candidate(run_id, {
        "pair": bundle.metadata["pair"], "dataset_rev": json.loads(dataset_version)["git_rev"],
        "data_md5": json.loads(dataset_version)["data_md5"], **figure_tags(json.loads(summary)["test"]),
        "gate": "passed" if gate["passed"] else "failed", "gate_reasons": "; ".join(gate["reasons"])[:4900],
        "bundle_sha256": bundle_digest(bundle.path),
    }, promote=gate["passed"] and gate["auto_promote"])
    return json.dumps({"version": version.version, "run_id": run_id,
                       "aliases": list(registry.get(version.version).aliases), "champion": (registry.alias(CHAMPION) or version).version})
