"""New cases as an edge site sends them, from the synthetic source: studies de-identified at the
hospital, with their labels and masks, in an intake folder that ``check_intake`` reads."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from ctscreen.errors import OutputError
from ctscreen.imaging.deidentify import deidentify_study
from ctscreen.imaging.synth import generate_dataset
from ctscreen.manifest import PATH_COLUMNS, read_manifest, write_manifest


def synthetic_intake(out: str | Path, cases: int, key: bytes, sites: int = 3, seed: int = 0, profile: str = "small",
                     first: int = 0, progress: bool = True) -> Path:
    """Cases ``first`` .. ``first + cases - 1`` of the synthetic source, de-identified with ``key``,
    as an intake folder ``out`` (``manifest.csv`` + ``cases/``); returns the manifest's path.

    The identifiable originals exist only in a temporary folder, as they would only at the hospital.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise OutputError(out, "intake folder is not empty; choose a new or empty folder so nothing is overwritten")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctscreen-edge-") as edge:
        rows = read_manifest(generate_dataset(Path(edge) / "synthetic", cases, sites, seed, profile, progress, first))
        for row in tqdm(rows, desc="de-identifying at the edge", unit="case", disable=not progress):
            case_dir = out / "cases" / row["case_id"]
            deidentify_study(Path(row["image"]), case_dir / "image", key, progress=False)
            for column in ("lung_mask", "lesion_mask"):
                shutil.copy2(row[column], case_dir / Path(row[column]).name)
            row["image"] = str(case_dir / "image")
            row.update({c: str(case_dir / Path(row[c]).name) for c in ("lung_mask", "lesion_mask")})
    return write_manifest([{**r, **{c: os.path.relpath(r[c], out) for c in PATH_COLUMNS}} for r in rows], out / "manifest.csv")
