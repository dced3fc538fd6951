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
    rows: int
    cols: int
    spacing: tuple[float, float]  # row, column (mm)
    slope: float
    intercept: float


def _numbers(path: Path, ds: pydicom.Dataset, keyword: str, count: int, default: float | None = None) -> np.ndarray:
    """``keyword``'s ``count`` values as finite floats; a PACS sends anything, so anything else is
    refused naming the file and the field (``default`` stands in for an absent or empty one)."""
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise InputError(path, f"{keyword} is missing")
        return np.full(count, default, dtype=float)
    values = list(value) if isinstance(value, (pydicom.multival.MultiValue, list, tuple)) else [value]
    try:
        numbers = np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        raise InputError(path, f"{keyword} is not numeric: {values!r:.80}") from None
    if numbers.shape != (count,):
        raise InputError(path, f"{keyword} has {len(numbers)} value(s), expected {count}")
    if not np.isfinite(numbers).all():
        raise InputError(path, f"{keyword} is not finite: {values!r:.80}")
    return numbers


def _size(path: Path, ds: pydicom.Dataset, keyword: str) -> int:
    value = ds.get(keyword)
    if not isinstance(value, int) or not 0 < value <= 65535:
        raise InputError(path, f"{keyword} is not a positive image size: {value!r:.40}")
    return value


def _parse_slice(path: Path, ds: pydicom.Dataset) -> _Slice:
    position = _numbers(path, ds, "ImagePositionPatient", 3)
    orientation = _numbers(path, ds, "ImageOrientationPatient", 6)
    if not np.allclose(np.linalg.norm(orientation.reshape(2, 3), axis=1), 1, atol=1e-2) or np.linalg.norm(_normal(orientation)) < 0.99:
        raise InputError(path, f"ImageOrientationPatient is not two perpendicular unit vectors: {list(orientation)}")
    spacing = _numbers(path, ds, "PixelSpacing", 2)
    if not (spacing > 0).all() or spacing.max() > 1000:
        raise InputError(path, f"PixelSpacing is not a plausible size in mm: {list(spacing)}")
    slope, intercept = float(_numbers(path, ds, "RescaleSlope", 1, 1.0)[0]), float(_numbers(path, ds, "RescaleIntercept", 1, 0.0)[0])
    return _Slice(path, ds, position, orientation, _size(path, ds, "Rows"), _size(path, ds, "Columns"), tuple(spacing), slope, intercept)


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
        try:  # pydicom parses values when first touched: a corrupt one raises whatever it raises, here
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
            candidates[str(ds.get("SeriesInstanceUID", "unknown"))].append(_parse_slice(file, ds))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(file, f"unreadable header ({type(exc).__name__}: {exc})") from None

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
    row_spacing, col_spacing = slices[0].spacing
    orientation = slices[0].orientation
    direction = np.column_stack([orientation[:3], orientation[3:], _normal(orientation)])
    metadata = SeriesMetadata(
        modality=str(first.get("Modality", "")) or None,
        manufacturer=_text(first, "Manufacturer"),
        model=_text(first, "ManufacturerModelName"),
        slice_thickness=_optional_number(first, "SliceThickness"),
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


def _optional_number(ds: pydicom.Dataset, keyword: str) -> float | None:
    """A descriptive number (not geometry): None when absent or not a finite number."""
    try:
        value = float(ds.get(keyword))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _order_and_check(slices: list[_Slice], folder: Path) -> list[_Slice]:
    reference = slices[0]
    size, spacing = (reference.rows, reference.cols), reference.spacing
    for s in slices[1:]:
        if (s.rows, s.cols) != size:
            raise InputError(s.path, f"slices of different sizes: {s.rows}x{s.cols} here, {size[0]}x{size[1]} in {reference.path.name}")
        if np.abs(s.orientation - reference.orientation).max() > ORIENTATION_TOLERANCE:
            raise InputError(s.path, f"slices of different orientations: {list(s.orientation)} here, {list(reference.orientation)} in {reference.path.name}")
        if s.spacing != spacing:
            raise InputError(s.path, f"slices of different pixel spacings: {list(s.spacing)} here, {list(spacing)} in {reference.path.name}")
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
    stated_tilt = float(_numbers(reference.path, reference.ds, "GantryDetectorTilt", 1, 0.0)[0])
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


def _native_frame(s: _Slice) -> np.ndarray | None:
    """Uncompressed 16-bit frames read straight from the buffer: pydicom's decoder costs more than the disk."""
    ds, rows, cols = s.ds, s.rows, s.cols
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
    try:
        native = _native_frame(s)
        if native is not None:
            return native
        pixels = s.ds.pixel_array
    except Exception as exc:
        syntax = s.ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", syntax)
        raise InputError(s.path, f"cannot decode pixel data ({name}): {exc}") from None
    if pixels.shape != (s.rows, s.cols):
        raise InputError(s.path, f"expected one {s.rows}x{s.cols} frame, found pixel data of shape {pixels.shape}")
    return pixels


def _stack_pixels(slices: list[_Slice]) -> np.ndarray:
    """HU per slice; int16 when every rescale is an integer shift that fits, else float32 (refused
    where the rescale takes it beyond float32)."""
    slopes = np.array([s.slope for s in slices])
    intercepts = np.array([s.intercept for s in slices])
    integral = bool(np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)))
    rows, cols = slices[0].rows, slices[0].cols
    out = np.empty((len(slices), rows, cols), dtype=np.int16 if integral else np.float32)
    compressed = slices[0].ds.file_meta.get("TransferSyntaxUID") not in _NATIVE_SYNTAXES
    with ThreadPoolExecutor(max_workers=4 if compressed else 1) as pool:  # codecs release the GIL, buffer reads don't need threads
        for k, pixels in enumerate(pool.map(_decode, slices)):
            if integral and not (-32768 <= int(pixels.min()) + intercepts[k] and int(pixels.max()) + intercepts[k] <= 32767):
                return _stack_pixels_float(slices, slopes, intercepts)
            np.add(pixels, np.int32(intercepts[k]) if integral else np.int32(0), out=out[k], casting="unsafe")
            if not integral:
                with np.errstate(over="ignore", invalid="ignore"):
                    out[k] *= slopes[k]
                    out[k] += intercepts[k]
                _check_finite(out[k], slices[k])
    return out


def _stack_pixels_float(slices: list[_Slice], slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    out = np.empty((len(slices), slices[0].rows, slices[0].cols), dtype=np.float32)
    for k, (s, m, b) in enumerate(zip(slices, slopes, intercepts)):
        with np.errstate(over="ignore", invalid="ignore"):
            out[k] = _decode(s) * np.float32(m) + np.float32(b)
        _check_finite(out[k], s)
    return out


def _check_finite(hu: np.ndarray, s: _Slice) -> None:
    if not np.isfinite(hu).all():
        raise InputError(s.path, f"RescaleSlope {s.slope:g} and RescaleIntercept {s.intercept:g} give HU beyond float32")


def _uniform_z(positions: np.ndarray, hu: np.ndarray, folder: Path, slices: list[_Slice], allow_gaps: bool):
    steps = np.diff(positions)
    median = float(np.median(steps))
    if not (np.isfinite(steps).all() and 0 < median < 1000):
        raise InputError(folder, f"slice positions give no plausible slice spacing (median step {median:g} mm)")
    if (positions[-1] - positions[0]) / median > 4 * len(positions):
        raise InputError(folder, f"slice positions span {positions[-1] - positions[0]:g} mm, far beyond what {len(positions)} slices "
                                 f"{median:g} mm apart cover: a slice's position is wrong")
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
