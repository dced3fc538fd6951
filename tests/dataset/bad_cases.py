"""Planting bad cases in an intake folder: each kind of problem intake must reject, with its reason."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import SimpleITK as sitk

from ctscreen.imaging.synth import generate_dataset


def plant_bad_cases(intake: Path) -> dict[str, str]:
    """Adds one case per problem to ``intake`` (copies of its first good case); case_id -> expected reason."""
    with open(intake / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    good = rows[0]
    planted = {}

    def add(case_id: str, reason: str, **changes) -> Path:
        case_dir = intake / "cases" / case_id
        shutil.copytree(intake / Path(good["image"]).parent, case_dir)
        rows.append({**good, "case_id": case_id, "patient_id": f"anon-{case_id}", **changes,
                     **{c: (Path("cases") / case_id / Path(good[c]).name).as_posix() for c in ("image", "lung_mask", "lesion_mask")}})
        planted[case_id] = reason
        return case_dir

    add("bad-unlabelled", "unlabelled", label="")
    add("bad-qc-failed", "annotation QC status is 'failed'", qc_status="failed")
    truncated = add("bad-unreadable", "unreadable")
    victim = sorted((truncated / "image").rglob("*.dcm"))[3]
    victim.write_bytes(victim.read_bytes()[:2000])
    wrong_grid = add("bad-wrong-grid", "lesion_mask is on a wrong grid")
    mask = sitk.ReadImage(str(wrong_grid / "lesion_mask.nii.gz"))
    mask.SetSpacing(tuple(2 * s for s in mask.GetSpacing()))
    sitk.WriteImage(mask, str(wrong_grid / "lesion_mask.nii.gz"))
    with_phi = add("bad-not-deidentified", "not de-identified")
    shutil.rmtree(with_phi / "image")
    raw = generate_dataset(intake.parent / f"{intake.name}-hospital-copy", cases=1, profile="tiny", progress=False, first=99)
    shutil.copytree(raw.parent / "cases" / "case-00099" / "dicom", with_phi / "image")
    for column in ("lung_mask", "lesion_mask"):
        shutil.copy2(raw.parent / "cases" / "case-00099" / f"{column}.nii.gz", with_phi / f"{column}.nii.gz")

    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(intake / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return planted
