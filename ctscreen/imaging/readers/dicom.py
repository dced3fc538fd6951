"""DICOM CT series: pick the series, order slices by position, apply rescale, decode any transfer syntax.

Slices are ordered by ImagePositionPatient projected on the slice normal and the z spacing comes
from those positions, because file names, InstanceNumber and SliceThickness all lie in practice.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ctscreen.errors import InputError
from ctscreen.imaging.dicom_files import is_dicom_file, list_files, read_dicom_file
from ctscreen.imaging.readers import Reader, register_reader
from ctscreen.imaging.volume import CTVolume, SeriesMetadata

GAP_FACTOR = 1.5  # a step over 1.5 x the median spacing is a missing slice
ORIENTATION_TOLERANCE = 1e-3  # cosine difference between slices of one series
TILT_TOLERANCE_DEG = 0.5  # in-plane drift of slice origins along the stack
SPACING_JITTER = 0.05  # relative spacing variation accepted without resampling


@dataclass
class _Slice:
    path: Path
    ds: pydicom.Dataset
    position: np.ndarray
    orientation: np.ndarray


def accepts(path: Path) -> bool:
    if path.is_dir():
        return True
    return path.is_file() and is_dicom_file(path)


def _is_image(ds: pydicom.Dataset) -> bool:
    return "PixelData" in ds and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds


def _is_localizer(ds: pydicom.Dataset) -> bool:
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    return "LOCALIZER" in image_type or "SCOUT" in image_type


def _normal(orientation: np.ndarray) -> np.ndarray:
    return np.cross(orientation[:3], orientation[3:])


def read_dicom_series(path: Path, allow_gaps: bool = False) -> CTVolume:
    folder = path if path.is_dir() else path.parent
    files = list_files(folder)
    with ThreadPoolExecutor(max_workers=2) as pool:  # overlaps disk reads; parsing holds the GIL
        datasets = list(pool.map(read_dicom_file, files))

    warnings: list[str] = []
    skipped: list[str] = []
    candidates: dict[str, list[_Slice]] = defaultdict(list)
    modalities: set[str] = set()
    for file, ds in zip(files, datasets):
        if ds is None:
            skipped.append(f"{file.name}: not DICOM")
            continue
        modality = str(ds.get("Modality", ""))
        modalities.add(modality or "unknown")
        if not _is_image(ds):
            skipped.append(f"{file.name}: not an image ({ds.get('SOPClassUID', 'no SOP class')})")
            continue
        if _is_localizer(ds):
            skipped.append(f"{file.name}: localizer")
            continue
        if modality != "CT":
            skipped.append(f"{file.name}: modality {modality or 'missing'}")
            continue
        try:
            position = np.array([float(v) for v in ds.ImagePositionPatient], dtype=float)
            orientation = np.array([float(v) for v in ds.ImageOrientationPatient], dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(file, f"unreadable ImagePositionPatient/ImageOrientationPatient ({exc})") from None
        if position.shape != (3,) or orientation.shape != (6,):
            raise InputError(file, "malformed ImagePositionPatient or ImageOrientationPatient")
        candidates[str(ds.get("SeriesInstanceUID", "unknown"))].append(_Slice(file, ds, position, orientation))

    if not candidates:
        if not modalities:
            raise InputError(folder, f"no DICOM files among {len(files)} file(s)")
        raise InputError(folder, f"no CT image series found (modalities present: {', '.join(sorted(modalities))})")

    axial = {uid: s for uid, s in candidates.items() if abs(_normal(s[0].orientation)[2]) > 0.8}
    pool_ = axial or candidates
    series_uid = max(pool_, key=lambda uid: len(pool_[uid]))
    slices = pool_[series_uid]
    if len(candidates) > 1:
        others = ", ".join(f"{uid} ({len(s)} slices)" for uid, s in candidates.items() if uid != series_uid)
        warnings.append(f"folder holds {len(candidates)} CT series; using {series_uid} ({len(slices)} slices), ignoring {others}")
        skipped.extend(f"{s.path.name}: other series" for uid, group in candidates.items() if uid != series_uid for s in group)
    if skipped:
        warnings.append(f"skipped {len(skipped)} file(s): " + "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))

    slices = _order_and_check(slices, folder)
    z_positions = np.array([float(np.dot(s.position, _normal(slices[0].orientation))) for s in slices])
    hu = _stack_pixels(slices)
    spacing_z, hu, z_warnings = _uniform_z(z_positions, hu, folder, slices, allow_gaps)
    warnings.extend(z_warnings)

    first = slices[0].ds
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    orientation = slices[0].orientation
    direction = np.column_stack([orientation[:3], orientation[3:], _normal(orientation)])
    metadata = SeriesMetadata(
        modality=str(first.get("Modality", "")) or None,
        manufacturer=_text(first, "Manufacturer"),
        model=_text(first, "ManufacturerModelName"),
        slice_thickness=float(first.SliceThickness) if first.get("SliceThickness") not in (None, "") else None,
        kernel=_text(first, "ConvolutionKernel"),
        study_instance_uid=_text(first, "StudyInstanceUID"),
        series_instance_uid=_text(first, "SeriesInstanceUID"),
        transfer_syntax=first.file_meta.TransferSyntaxUID.name if "TransferSyntaxUID" in first.file_meta else None,
        n_files_used=len(slices),
        n_files_skipped=len(files) - len(slices),
    )
    return CTVolume(
        hu=hu,
        spacing_zyx=(spacing_z, row_spacing, col_spacing),
        origin=tuple(float(v) for v in slices[0].position),
        direction=direction,
        metadata=metadata,
        source=folder,
        warnings=warnings,
    )


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _order_and_check(slices: list[_Slice], folder: Path) -> list[_Slice]:
    reference = slices[0]
    size = (int(reference.ds.Rows), int(reference.ds.Columns))
    spacing = tuple(float(v) for v in reference.ds.get("PixelSpacing", [0, 0]))
    if min(spacing) <= 0:
        raise InputError(reference.path, "missing or invalid PixelSpacing")
    for s in slices[1:]:
        if (int(s.ds.Rows), int(s.ds.Columns)) != size:
            raise InputError(
                s.path, f"slices of different sizes: {s.ds.Rows}x{s.ds.Columns} here, {size[0]}x{size[1]} in {reference.path.name}"
            )
        if np.abs(s.orientation - reference.orientation).max() > ORIENTATION_TOLERANCE:
            raise InputError(s.path, f"slices of different orientations: {list(s.orientation)} here, {list(reference.orientation)} in {reference.path.name}")
        if tuple(float(v) for v in s.ds.PixelSpacing) != spacing:
            raise InputError(s.path, f"slices of different pixel spacings: {list(s.ds.PixelSpacing)} here, {list(spacing)} in {reference.path.name}")
    normal = _normal(reference.orientation)
    slices = sorted(slices, key=lambda s: float(np.dot(s.position, normal)))
    if len(slices) < 2:
        raise InputError(folder, "a single slice is not a CT volume")
    positions = np.array([float(np.dot(s.position, normal)) for s in slices])
    duplicate = np.flatnonzero(np.diff(positions) < 1e-3)
    if duplicate.size:
        a, b = slices[duplicate[0]], slices[duplicate[0] + 1]
        raise InputError(b.path, f"two slices at the same position {positions[duplicate[0]]:.3f} mm ({a.path.name} and {b.path.name})")

    tilt_deg = _tilt_degrees(slices, normal)
    stated_tilt = float(reference.ds.get("GantryDetectorTilt", 0) or 0)
    if tilt_deg > TILT_TOLERANCE_DEG or abs(stated_tilt) > TILT_TOLERANCE_DEG:
        raise InputError(
            folder,
            f"gantry tilt of {max(tilt_deg, abs(stated_tilt)):.1f} degrees: slices are not stacked along their normal; "
            "reconstruct without tilt or correct the tilt before screening",
        )
    return slices


def _tilt_degrees(slices: list[_Slice], normal: np.ndarray) -> float:
    step = slices[-1].position - slices[0].position
    along = float(np.dot(step, normal))
    across = float(np.linalg.norm(step - along * normal))
    return float(np.degrees(np.arctan2(across, abs(along)))) if along else 0.0


_NATIVE_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}


def _native_frame(ds: pydicom.Dataset) -> np.ndarray | None:
    """Uncompressed 16-bit frames read straight from the buffer: pydicom's decoder costs more than the disk."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    if (
        ds.file_meta.get("TransferSyntaxUID") not in _NATIVE_SYNTAXES
        or int(ds.get("BitsAllocated", 0)) != 16
        or int(ds.get("SamplesPerPixel", 1)) != 1
        or len(ds.PixelData) != rows * cols * 2
    ):
        return None
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    frame = np.frombuffer(ds.PixelData, dtype="<i2" if signed else "<u2").reshape(rows, cols)
    shift = 16 - int(ds.get("BitsStored", 16))
    if signed and shift:
        frame = (frame << shift) >> shift  # sign-extend the stored bits
    return frame


def _decode(s: _Slice) -> np.ndarray:
    native = _native_frame(s.ds)
    if native is not None:
        return native
    try:
        pixels = s.ds.pixel_array
    except Exception as exc:
        syntax = s.ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", syntax)
        raise InputError(s.path, f"cannot decode pixel data ({name}): {exc}") from None
    if pixels.ndim != 2:
        raise InputError(s.path, f"expected one 2D frame, found pixel data of shape {pixels.shape}")
    return pixels


def _stack_pixels(slices: list[_Slice]) -> np.ndarray:
    """HU per slice; int16 when every rescale is an integer shift that fits, else float32."""
    slopes = np.array([float(s.ds.get("RescaleSlope", 1) or 1) for s in slices])
    intercepts = np.array([float(s.ds.get("RescaleIntercept", 0) or 0) for s in slices])
    integral = bool(np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)))
    rows, cols = int(slices[0].ds.Rows), int(slices[0].ds.Columns)
    out = np.empty((len(slices), rows, cols), dtype=np.int16 if integral else np.float32)
    compressed = slices[0].ds.file_meta.get("TransferSyntaxUID") not in _NATIVE_SYNTAXES
    with ThreadPoolExecutor(max_workers=4 if compressed else 1) as pool:  # codecs release the GIL, buffer reads don't need threads
        for k, pixels in enumerate(pool.map(_decode, slices)):
            if integral and not (-32768 <= int(pixels.min()) + intercepts[k] and int(pixels.max()) + intercepts[k] <= 32767):
                return _stack_pixels_float(slices, slopes, intercepts)
            np.add(pixels, np.int32(intercepts[k]) if integral else np.int32(0), out=out[k], casting="unsafe")
            if not integral:
                out[k] *= slopes[k]
                out[k] += intercepts[k]
    return out


def _stack_pixels_float(slices: list[_Slice], slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    return np.stack([_decode(s) * np.float32(m) + np.float32(b) for s, m, b in zip(slices, slopes, intercepts)]).astype(np.float32)


def _uniform_z(positions: np.ndarray, hu: np.ndarray, folder: Path, slices: list[_Slice], allow_gaps: bool):
    steps = np.diff(positions)
    median = float(np.median(steps))
    warnings: list[str] = []
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        where = ", ".join(f"{steps[i]:.2f} mm after {slices[i].path.name}" for i in gaps[:3])
        if not allow_gaps:
            raise InputError(
                folder,
                f"missing slices: {gaps.size} gap(s) over {GAP_FACTOR}x the median spacing {median:.3f} mm ({where}); "
                "pass --allow-gaps to interpolate across them",
            )
        warnings.append(f"interpolated across {gaps.size} gap(s) in the slice stack ({where})")
    elif np.abs(steps - median).max() <= SPACING_JITTER * median:
        return median, hu, warnings
    else:
        warnings.append(f"uneven slice spacing ({steps.min():.3f}-{steps.max():.3f} mm) resampled to {median:.3f} mm")
    return median, _resample_z(positions, hu, median), warnings


def _resample_z(positions: np.ndarray, hu: np.ndarray, spacing: float) -> np.ndarray:
    """Linear interpolation along z onto a uniform grid starting at the first slice."""
    n = int(np.floor((positions[-1] - positions[0]) / spacing + 1e-6)) + 1
    targets = positions[0] + spacing * np.arange(n)
    upper = np.clip(np.searchsorted(positions, targets, side="right"), 1, len(positions) - 1)
    lower = upper - 1
    weight = ((targets - positions[lower]) / (positions[upper] - positions[lower])).astype(np.float32)
    weight = np.clip(weight, 0, 1)[:, None, None]
    out = hu[lower].astype(np.float32) * (1 - weight) + hu[upper].astype(np.float32) * weight
    return out.astype(hu.dtype) if hu.dtype == np.int16 else out


register_reader(Reader("dicom-series", accepts, lambda path, allow_gaps=False, **_: read_dicom_series(path, allow_gaps)))
