"""Write a synthetic multi-site dataset: a DICOM series and two masks per case, and one manifest."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ctscreen.errors import OutputError
from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from ctscreen.imaging.synth.phi import PRIVATE_CREATOR, PRIVATE_GROUP
from ctscreen.imaging.synth.render import render_case
from ctscreen.imaging.synth.sites import SITES, choose_sites
from ctscreen.imaging.synth.spec import PROFILES, CaseSpec, Grid, case_grid, make_case
from ctscreen.imaging.volume import CTVolume, write_mask
from ctscreen.manifest import write_manifest

MANIFEST_COLUMNS = (
    "case_id", "patient_id", "site", "scanner", "manufacturer", "model", "kernel", "label", "subtype",
    "slice_thickness", "slice_spacing", "pixel_spacing", "rows", "columns", "slices", "patient_sex", "patient_age",
    "image", "lung_mask", "lesion_mask", "lesion_volume_ml", "lung_volume_ml",
)


def _validate(cases: int, sites: int, profile: str) -> None:
    if not isinstance(cases, int) or cases < 1:
        raise ValueError(f"cases must be a whole number of at least 1, got {cases!r}")
    if not isinstance(sites, int) or not 1 <= sites <= len(SITES):
        raise ValueError(f"sites must be a whole number from 1 to {len(SITES)} (the site catalogue), got {sites!r}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(sorted(PROFILES))}")


def write_case(spec: CaseSpec, grid: Grid, out_dir: Path) -> dict[str, str]:
    """Render ``spec`` on ``grid`` and write it under ``out_dir``/cases; returns its manifest row."""
    rendered = render_case(spec, grid)
    scan = spec.scan
    case_dir = out_dir / "cases" / spec.case_id
    description = SeriesDescription(
        study_instance_uid=spec.uids[0], series_instance_uid=spec.uids[1], frame_of_reference_uid=spec.uids[2],
        manufacturer=scan.scanner.manufacturer, model=scan.scanner.model, kernel=scan.kernel,
        slice_thickness=scan.thickness_mm, series_number=2, acquired=spec.acquired,
        attributes={**spec.phi.attributes, "SeriesDescription": f"Chest {scan.thickness_mm:g}mm {scan.kernel}",
                    "BodyPartExamined": "CHEST"},
        private=tuple((PRIVATE_GROUP, PRIVATE_CREATOR, element, vr, value) for element, vr, value in spec.phi.private),
    )
    write_ct_series(rendered.hu, grid.spacing_zyx, case_dir / "dicom", description, origin=grid.origin_xyz)
    volume = CTVolume(hu=rendered.hu, spacing_zyx=grid.spacing_zyx, origin=grid.origin_xyz)
    write_mask(volume, rendered.lung_mask, case_dir / "lung_mask.nii.gz")
    write_mask(volume, rendered.lesion_mask, case_dir / "lesion_mask.nii.gz")
    nz, ny, nx = grid.shape_zyx
    relative = Path("cases") / spec.case_id
    return {
        "case_id": spec.case_id,
        "patient_id": spec.patient_id,
        "site": spec.site.key,
        "scanner": scan.scanner.key,
        "manufacturer": scan.scanner.manufacturer,
        "model": scan.scanner.model,
        "kernel": scan.kernel,
        "label": spec.label,
        "subtype": spec.subtype,
        "slice_thickness": f"{scan.thickness_mm:g}",
        "slice_spacing": f"{grid.spacing_zyx[0]:g}",
        "pixel_spacing": f"{grid.spacing_zyx[1]:g}",
        "rows": str(ny),
        "columns": str(nx),
        "slices": str(nz),
        "patient_sex": spec.patient.sex,
        "patient_age": str(spec.patient.age),
        "image": (relative / "dicom").as_posix(),
        "lung_mask": (relative / "lung_mask.nii.gz").as_posix(),
        "lesion_mask": (relative / "lesion_mask.nii.gz").as_posix(),
        "lesion_volume_ml": f"{rendered.lesion_mask.sum(dtype=float) * volume.voxel_volume_ml:.3f}",
        "lung_volume_ml": f"{rendered.lung_mask.sum(dtype=float) * volume.voxel_volume_ml:.1f}",
    }


def generate_dataset(out_dir: str | Path, cases: int, sites: int = 3, seed: int = 0, profile: str = "small",
                     progress: bool = True, first: int = 0) -> Path:
    """Write ``cases`` synthetic chest CT cases from ``sites`` hospitals to an empty ``out_dir``.

    Case i depends only on (seed, i, sites), so a larger dataset extends a smaller one, and ``first``
    starts at case ``first`` — the next batch of the same source, as new cases arrive. Returns the
    manifest's path. Raises ValueError on bad arguments and OutputError when ``out_dir`` is not empty.
    """
    _validate(cases, sites, profile)
    if not isinstance(first, int) or first < 0:
        raise ValueError(f"first must be a whole number of at least 0, got {first!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise OutputError(out_dir, "output folder is not empty; choose a new or empty folder so nothing is overwritten")
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = choose_sites(seed, sites)
    rows = []
    for index in tqdm(range(first, first + cases), desc="synthesising cases", unit="case", disable=not progress):
        spec = make_case(seed, index, chosen)
        rows.append(write_case(spec, case_grid(spec, profile), out_dir))
    return write_manifest(rows, out_dir / "manifest.csv")
