"""David Clunie's ``dciodvfy`` (Debian's dicom3tools) on a result object: what a PACS or viewer
would reject in it, checked against the IOD's modules by a validator that is not ours."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from ctscreen.errors import CTScreenError, InputError

DCIODVFY = "dciodvfy"
DEBIAN_FALLBACK = Path("/usr/bin/dciodvfy")
# "Error - ..." or, for an element, "(0x0008,0x0016)  UI SOPClassUID  - Error - ..."
_FINDING = re.compile(r"(?:^|\s-\s)(Error|Warning|Abort) - ")


class ValidatorMissing(CTScreenError):
    """dciodvfy is not installed, so the result objects cannot be checked."""


@dataclass
class Verification:
    """dciodvfy's findings on one file: the IOD it took it for, its errors and its warnings."""

    iod: str | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _dciodvfy() -> str:
    found = shutil.which(DCIODVFY) or (str(DEBIAN_FALLBACK) if DEBIAN_FALLBACK.exists() else None)
    if found is None:
        raise ValidatorMissing("dciodvfy is not installed: install Debian's dicom3tools package (apt-get install dicom3tools)")
    return found


def verify(dataset_or_path: Dataset | str | Path) -> Verification:
    """dciodvfy on a file, or on a dataset saved to a temporary file first."""
    program = _dciodvfy()
    if isinstance(dataset_or_path, Dataset):
        with tempfile.TemporaryDirectory(prefix="dciodvfy-") as tmp:
            path = Path(tmp) / "object.dcm"
            dataset_or_path.save_as(path, enforce_file_format=True)
            return _run(program, path)
    return _run(program, Path(dataset_or_path))


def _run(program: str, path: Path) -> Verification:
    if not path.is_file():
        raise InputError(path, "no such file")
    completed = subprocess.run([program, str(path)], capture_output=True, text=True, errors="replace", timeout=120)
    found: dict[str, list[str]] = {"Error": [], "Warning": [], "Abort": [], None: []}
    for line in (completed.stderr + "\n" + completed.stdout).splitlines():
        if line.strip():
            kind = _FINDING.search(line)
            found[kind.group(1) if kind else None].append(line.strip())
    if found["Abort"] or (completed.returncode != 0 and not found["Error"]):
        reason = found["Abort"][0] if found["Abort"] else f"exit status {completed.returncode} without a finding"
        raise InputError(path, f"dciodvfy could not check it: {reason}")
    return Verification(iod=found[None][0] if found[None] else None, errors=found["Error"], warnings=found["Warning"])


def dciodvfy_problems(dataset_or_path: Dataset | str | Path) -> list[str]:
    """dciodvfy's "Error" lines (``verify`` gives its warnings too); empty for a valid object."""
    return verify(dataset_or_path).errors
