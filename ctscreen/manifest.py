"""The dataset manifest: one row per case, paths relative to the manifest's folder (DESIGN: a case)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from ctscreen.errors import InputError

REQUIRED_COLUMNS = ("case_id", "site", "scanner", "label", "subtype", "image")
PATH_COLUMNS = ("image", "lung_mask", "lesion_mask")
LABELS = ("positive", "negative")


def read_manifest(path: str | Path, check_labels: bool = True) -> list[dict]:
    """Rows as dicts, with path columns resolved against the manifest's folder; ``check_labels=False``
    leaves label checks to the caller, for intake, which rejects a bad row rather than the manifest."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            rows = list(reader)
    except OSError as exc:
        raise InputError(path, f"cannot read manifest ({exc.strerror})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(path, f"manifest lacks column(s) {', '.join(missing)}")
    for line, row in enumerate(rows, start=2):
        if check_labels and row["label"] not in LABELS:
            raise InputError(path, f"line {line}: label {row['label']!r} is not one of {', '.join(LABELS)}")
        for column in PATH_COLUMNS:
            if row.get(column):
                row[column] = str(path.parent / row[column])
    return rows


def write_manifest(rows: list[dict], path: str | Path) -> Path:
    """Write rows (path columns already relative to the manifest's folder) as CSV."""
    path = Path(path)
    columns = list(rows[0]) if rows else list(REQUIRED_COLUMNS)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def content_digest(row: dict, salt: str = "") -> str:
    """A case's identity by content: the bytes and names of its image and mask files (and ``salt``)."""
    digest = hashlib.sha256(salt.encode())
    for column in PATH_COLUMNS:
        if not row.get(column):
            continue
        path = Path(row[column])
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:32]
