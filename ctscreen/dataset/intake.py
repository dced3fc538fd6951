"""Intake: the cases that arrived since the last retraining, checked one by one before the dataset
takes them. A bad case is rejected with its reason and the rest go on; nothing is dropped silently.

An intake location is a folder with a ``manifest.csv`` (the dataset manifest's columns, paths
relative to the folder), or a folder of case packages as edge sites deliver them: one subfolder per
case, each with its own ``manifest.csv`` (paths relative to that subfolder). Hidden subfolders are
deliveries still in flight and are left for the next ingest. An S3 intake (``s3://...``) is first
downloaded by ``intake_folder``. A case is accepted when its image is readable CT, its DICOM files are
de-identified, it has a label (and a subtype that agrees with it), a lesion mask on the image's grid
(and a lung mask, if given, on the same grid), and — where the annotation QC step has recorded a
``qc_status`` — that status is ``passed``.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ctscreen.errors import CTScreenError, InputError
from ctscreen.imaging.deidentification.audit import phi_findings
from ctscreen.imaging.dicom_files import list_files, read_dicom_file
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.synth import SUBTYPES
from ctscreen.imaging.volume import CTVolume
from ctscreen.manifest import LABELS, read_manifest
from ctscreen.storage_url import S3Location, is_s3_url, parse_s3_url

QC_PASSED = "passed"
GRID_TOLERANCE_MM = 0.01


@dataclass
class IntakeReport:
    accepted: list[dict] = field(default_factory=list)  # manifest rows, paths absolute
    rejected: list[dict] = field(default_factory=list)  # {"case_id", "image", "reason"}

    def to_dict(self) -> dict:
        return {"accepted": [r["case_id"] for r in self.accepted], "rejected": self.rejected}


def check_intake(intake: str | Path) -> IntakeReport:
    """Every case of ``intake/manifest.csv``, or of its case packages' manifests together, accepted
    or rejected with the reason."""
    intake = Path(intake)
    manifest = intake / "manifest.csv"
    report = IntakeReport()
    if manifest.exists():
        rows = read_manifest(manifest, check_labels=False)
    else:
        packages = sorted(p for p in intake.iterdir() if p.is_dir() and not p.name.startswith(".")) if intake.is_dir() else []
        if not packages:
            raise InputError(manifest, "intake location has no manifest.csv, nor case packages (subfolders with one)")
        rows = []
        for package in packages:  # one broken package does not hold the others back
            if not (package / "manifest.csv").exists():
                report.rejected.append({"case_id": package.name, "image": "", "reason":
                                        "no manifest.csv: not a case package, or one still being uploaded"})
                continue
            try:
                rows += read_manifest(package / "manifest.csv", check_labels=False)
            except InputError as exc:
                report.rejected.append({"case_id": package.name, "image": "", "reason": f"not a case package: {exc}"})
    seen: set[str] = set()
    for row in rows:
        reason = "case_id appears twice in the intake" if row["case_id"] in seen else case_problem(row)
        seen.add(row["case_id"])
        if reason:
            report.rejected.append({"case_id": row["case_id"], "image": row.get("image", ""), "reason": reason})
        else:
            report.accepted.append(row)
    return report


@contextmanager
def intake_folder(location: str | Path):
    """``location`` as a local folder for ``check_intake``: itself, or an S3 intake downloaded to a
    temporary folder that lives as long as the ``with`` block (the accepted rows point into it)."""
    if not is_s3_url(location):
        yield Path(location)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = parse_s3_url(str(location))
    with tempfile.TemporaryDirectory(prefix="ctscreen-intake-") as folder:
        try:
            _download(s3, Path(folder))
        except (BotoCoreError, ClientError) as exc:
            raise InputError(s3.url, f"cannot download the intake ({exc})") from None
        yield Path(folder)


def _download(s3: S3Location, folder: Path) -> None:
    client, root = s3.client(), s3.key("")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=root):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):
                continue  # a folder marker some S3 consoles create: no content
            relative = PurePosixPath(item["Key"][len(root):].lstrip("/"))
            if ".." in relative.parts:
                raise InputError(f"{s3.url}/{relative}", "object key leaves the intake prefix; refusing to download it")
            target = folder.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(s3.bucket, item["Key"], str(target))


def case_problem(row: dict) -> str | None:
    """Why the case cannot join the dataset, or None."""
    if row["label"] not in LABELS:
        return f"unlabelled: label {row['label']!r} is not one of {', '.join(LABELS)}"
    if row["subtype"] not in SUBTYPES or (row["subtype"] == "covid") != (row["label"] == "positive"):
        return f"subtype {row['subtype']!r} does not agree with label {row['label']!r}"
    if row.get("qc_status") and row["qc_status"] != QC_PASSED:
        return f"annotation QC status is {row['qc_status']!r}, not {QC_PASSED!r}"
    if not row.get("lesion_mask"):
        return "no lesion mask"
    try:
        image = load_volume(row["image"])
        phi = _dicom_phi(Path(row["image"]))
        if phi:
            return f"not de-identified: {'; '.join(phi[:3])}"
        for column in ("lesion_mask", "lung_mask"):
            if row.get(column):
                mismatch = grid_mismatch(image, load_volume(row[column]))
                if mismatch:
                    return f"{column} is on a wrong grid: {mismatch}"
    except CTScreenError as exc:
        return f"unreadable: {exc}"
    return None


def _dicom_phi(image: Path) -> list[str]:
    if not image.is_dir() and image.suffix.lower() not in (".dcm", ""):
        return []  # NIfTI / NRRD / MHA carry no patient attributes
    for path in list_files(image):
        ds = read_dicom_file(path)
        findings = phi_findings(ds) if ds is not None else []
        if findings:
            return [f"{path.name}: {f}" for f in findings]  # one file tells; the series shares its headers
    return []


def grid_mismatch(image: CTVolume, mask: CTVolume) -> str | None:
    """How ``mask``'s grid differs from ``image``'s, or None; edge sites check their masks with it too."""
    if mask.shape_zyx != image.shape_zyx:
        return f"shape {list(mask.shape_zyx)} != image {list(image.shape_zyx)}"
    for name in ("spacing_zyx", "origin"):
        if not np.allclose(getattr(mask, name), getattr(image, name), atol=GRID_TOLERANCE_MM):
            return f"{name} {np.round(getattr(mask, name), 3).tolist()} != image {np.round(getattr(image, name), 3).tolist()}"
    if not np.allclose(mask.direction, image.direction, atol=1e-4):
        return "direction differs from the image's"
    return None
