"""``ctscreen deidentify``: a de-identified copy of a DICOM study, made at the edge before anything leaves.

Applies the DICOM PS3.15 Basic Application Level Confidentiality Profile with the Retain Longitudinal
Temporal Information with Modified Dates and the Retain Patient Characteristics options (see
:mod:`ctscreen.imaging.deidentification`). Pixel data are copied byte for byte, so images that may
show text in their pixels are withheld and reported rather than passed on silently. SRC is only
ever read; DST appears complete or not at all.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    EncapsulatedCDAStorage,
    EncapsulatedMTLStorage,
    EncapsulatedOBJStorage,
    EncapsulatedPDFStorage,
    EncapsulatedSTLStorage,
    MediaStorageDirectoryStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    VideoPhotographicImageStorage,
    VLPhotographicImageStorage,
)
from tqdm import tqdm

from ctscreen.errors import CTScreenError, InputError, OutputError
from ctscreen.imaging.dicom_files import NOT_DICOM, list_files, read_dicom_file
from ctscreen.imaging.deidentification.engine import METHOD, OPTIONS, Deidentifier

KEY_ENV = "CTSCREEN_DEID_KEY"
MIN_KEY_BYTES = 16
UNKNOWN_SERIES = "unknown-series"  # output folder for instances whose SeriesInstanceUID is empty

# Screenshots, dose pages, ultrasound and photographs usually show text or faces in their pixels
# and often do not say so: without an explicit BurnedInAnnotation they are treated as if they did.
TEXT_PRONE_SOP_CLASSES = {
    SecondaryCaptureImageStorage,
    MultiFrameSingleBitSecondaryCaptureImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    VLPhotographicImageStorage,
    VideoPhotographicImageStorage,
}
ENCAPSULATED_DOCUMENTS = {
    EncapsulatedPDFStorage,
    EncapsulatedCDAStorage,
    EncapsulatedSTLStorage,
    EncapsulatedOBJStorage,
    EncapsulatedMTLStorage,
}


class DeidentificationKeyError(CTScreenError):
    """No usable de-identification key: without one, pseudonyms and UIDs cannot be derived."""


@dataclass
class DeidentificationReport:
    """What was written, skipped and withheld. File names are relative to SRC: keep it on site."""

    dst: Path
    n_written: int = 0
    skipped: list[dict] = field(default_factory=list)
    burned_in: list[dict] = field(default_factory=list)
    series: dict[str, int] = field(default_factory=dict)
    studies: set[str] = field(default_factory=set)

    def to_dict(self) -> dict:
        return {
            "dst": str(self.dst),
            "n_written": self.n_written,
            "n_studies": len(self.studies),
            "n_series": len(self.series),
            "series": dict(self.series),
            "n_skipped": len(self.skipped),
            "skipped": list(self.skipped),
            "n_burned_in": len(self.burned_in),
            "n_withheld": sum(entry["action"] == "withheld" for entry in self.burned_in),
            "burned_in": list(self.burned_in),
            "options": [{"code": c.value, "scheme": c.scheme_designator, "meaning": c.meaning} for c in OPTIONS],
            "deidentification_method": list(METHOD),
        }


def load_key(key_file: Path | None) -> bytes:
    """The secret key from ``key_file``, else from $CTSCREEN_DEID_KEY; surrounding whitespace is ignored.

    The same key must be used for every study of a site, or one patient gets several pseudonyms.
    """
    if key_file is not None:
        path = Path(key_file)
        try:
            key = path.read_bytes().strip()
        except FileNotFoundError:
            raise InputError(path, "no such key file") from None
        except OSError as exc:
            raise InputError(path, f"cannot read the key file ({exc.strerror})") from None
        if len(key) < MIN_KEY_BYTES:
            raise InputError(path, _short_key_problem(len(key)))
        return key
    key = os.environ.get(KEY_ENV, "").strip().encode("utf-8")
    if not key:
        raise DeidentificationKeyError(
            f"no de-identification key: pass --key-file or set {KEY_ENV} "
            "(create one with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    if len(key) < MIN_KEY_BYTES:
        raise DeidentificationKeyError(f"{KEY_ENV}: {_short_key_problem(len(key))}")
    return key


def _short_key_problem(n: int) -> str:
    return f"the key is {n} bytes long; at least {MIN_KEY_BYTES} are needed so that pseudonyms cannot be guessed"


def deidentify_study(
    src: Path,
    dst: Path,
    key: bytes,
    overwrite: bool = False,
    keep_burned_in: bool = False,
    progress: bool = True,
) -> DeidentificationReport:
    """Write a de-identified copy of the DICOM files under ``src`` (a folder or one file) to ``dst``.

    Output files are named ``dst/<new SeriesInstanceUID>/<new SOPInstanceUID>.dcm`` so that no part
    of a source path reaches them. Images that may show text in their pixels are withheld unless
    ``keep_burned_in``; either way they are listed in the report.
    """
    src, dst = Path(src), Path(dst)
    if len(key) < MIN_KEY_BYTES:
        raise DeidentificationKeyError(_short_key_problem(len(key)))
    files = list_files(src)
    _check_destination(src, dst, overwrite)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = dst.parent / f".{dst.name}.{uuid.uuid4().hex}.partial"
    staging.mkdir()
    report = DeidentificationReport(dst=dst)
    try:
        root = src if src.is_dir() else src.parent
        _deidentify_files(files, root, staging, Deidentifier(key), keep_burned_in, progress, report)
        if sum(entry["reason"] == NOT_DICOM for entry in report.skipped) == len(files):
            raise InputError(src, f"no DICOM files among {len(files)} file(s)")
        _move_into_place(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _deidentify_files(
    files: list[Path],
    root: Path,
    staging: Path,
    engine: Deidentifier,
    keep_burned_in: bool,
    progress: bool,
    report: DeidentificationReport,
) -> None:
    for path in tqdm(files, desc="de-identify", unit="file", disable=not progress, file=sys.stderr):
        name = path.relative_to(root).as_posix()
        ds = read_dicom_file(path, decode_all=True)
        if ds is None:
            report.skipped.append({"file": name, "reason": NOT_DICOM})
            continue
        sop_class = UID(str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", "")))
        if sop_class == MediaStorageDirectoryStorage:
            report.skipped.append({"file": name, "reason": "DICOMDIR: an index of SRC's files, not an instance"})
            continue
        if sop_class in ENCAPSULATED_DOCUMENTS:
            report.skipped.append({"file": name, "reason": f"{sop_class.name}: an encapsulated document cannot be de-identified"})
            continue
        burned_in = _burned_in_reason(ds, sop_class)
        if burned_in and not keep_burned_in:
            report.burned_in.append({"file": name, "reason": burned_in, "action": "withheld", "output": None})
            continue
        engine.apply(ds)
        if not ds.get("SOPInstanceUID"):
            report.skipped.append({"file": name, "reason": "no SOP Instance UID in the dataset or its file meta"})
            continue
        series = str(ds.get("SeriesInstanceUID") or UNKNOWN_SERIES)
        out = staging / series / f"{ds.SOPInstanceUID}.dcm"
        if out.exists():
            report.skipped.append({"file": name, "reason": "same SOP Instance UID as a file already written"})
            continue
        out.parent.mkdir(exist_ok=True)
        try:
            ds.save_as(out, enforce_file_format=True)
        except OSError as exc:
            raise OutputError(report.dst, f"cannot write the de-identified copy ({exc.strerror})") from None
        except Exception as exc:  # a value pydicom cannot encode
            raise InputError(path, f"cannot be written back after de-identification ({type(exc).__name__}: {exc})") from None
        report.n_written += 1
        report.series[series] = report.series.get(series, 0) + 1
        report.studies.add(str(ds.get("StudyInstanceUID", "")))
        if burned_in:
            output = out.relative_to(staging).as_posix()
            report.burned_in.append({"file": name, "reason": burned_in, "action": "kept", "output": output})


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    source, target = src.resolve(), dst.resolve()
    if target == source or source in target.parents:
        raise OutputError(dst, "is inside SRC; SRC is never written to")
    if target in source.parents:
        raise OutputError(dst, "contains SRC; replacing it would destroy SRC")
    if dst.exists() and not dst.is_dir():
        raise OutputError(dst, "exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise OutputError(dst, "folder is not empty; pass --overwrite to replace it")


def _move_into_place(staging: Path, dst: Path) -> None:
    """Swap the finished staging folder in, so DST is never seen half-written."""
    if not dst.exists():
        staging.rename(dst)
        return
    previous = dst.parent / f".{dst.name}.{uuid.uuid4().hex}.old"
    dst.rename(previous)
    try:
        staging.rename(dst)
    except BaseException:
        previous.rename(dst)
        raise
    shutil.rmtree(previous)


def _burned_in_reason(ds: Dataset, sop_class: UID) -> str | None:
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    if str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper() == "YES":
        return "RecognizableVisualFeatures is YES"
    if flag:
        return None
    if sop_class in TEXT_PRONE_SOP_CLASSES:
        return f"{sop_class.name} without BurnedInAnnotation"
    if "SCREEN SAVE" in [str(v).upper() for v in ds.get("ImageType", [])]:
        return "ImageType SCREEN SAVE without BurnedInAnnotation"
    return None
