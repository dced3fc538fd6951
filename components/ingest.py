"""Step 1: check the intake's new cases and add the accepted ones to the DVC-versioned dataset."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Output, Markdown

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(intake: str, dataset: str, seed: int, rejected: Output[Markdown]) -> NamedTuple("Ingested", dataset_version=str, added=int):
    """Outputs the dataset version (git revision + DVC hash) the rest of the run uses, and the
    rejected cases with their reasons."""
    import json
    from collections import namedtuple

    from ctscreen.dataset.intake import check_intake
    from ctscreen.dataset.repository import DatasetRepository

    report = check_intake(intake)
    result = DatasetRepository.open(dataset).add_cases(report.accepted, seed=seed, message=f"Ingest {intake}")
    lines = ["| case | reason |", "|---|---|"] + [f"| {r['case_id']} | {r['reason']} |" for r in report.rejected]
    with open(rejected.path, "w") as fh:
        fh.write(f"# Intake {intake}\n\n{len(result['added'])} added, {len(result['skipped'])} already present, "
                 f"{len(report.rejected)} rejected\n\n" + ("\n".join(lines) if report.rejected else "") + "\n")
    rejected.metadata["rejected"] = json.dumps(report.rejected)
    return namedtuple("Ingested", ["dataset_version", "added"])(json.dumps(result["version"]), len(result["added"]))
