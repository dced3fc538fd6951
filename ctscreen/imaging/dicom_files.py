"""Reading single DICOM files safely: not-DICOM told apart from broken DICOM, truncation caught.

pydicom reads a truncated file without complaint, so truncation is looked for here: a value
shorter than its declared length, a missing delimiter at the end of the file, an image without
pixel data.
"""

from __future__ import annotations

import warnings
from collections import deque
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ctscreen.errors import InputError

NOT_DICOM = "not a DICOM file (no DICM header)"
UNDEFINED_LENGTH = 0xFFFFFFFF


def is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def list_files(src: Path) -> list[Path]:
    """``src`` itself or every file below it; refuses a missing path and an empty folder."""
    if not src.exists():
        raise InputError(src, "no such file or folder")
    if src.is_file():
        return [src]
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not files:
        raise InputError(src, "empty folder: no files to read")
    return files


def read_dicom_file(path: Path, decode_all: bool = False) -> Dataset | None:
    """The dataset, or None for a file that is not DICOM; ``InputError`` naming a broken one.

    ``decode_all`` converts every element, nested ones included, so a corrupt value deep inside a
    sequence surfaces here rather than in whoever touches it later.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
            if len(head) < 132 or head[128:132] != b"DICM":
                return None
            fh.seek(0)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(fh)
                short = _short_element(ds)
                if decode_all:
                    deque(ds.iterall(), maxlen=0)  # decode every element, nested ones too
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror})") from None
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise InputError(path, f"corrupt DICOM file ({type(exc).__name__}: {exc})") from None
    if short:
        raise InputError(path, f"truncated DICOM file: {short}")
    if any("End of file reached" in str(w.message) for w in caught):
        raise InputError(path, "truncated DICOM file: it ends before its last element does")
    if "Rows" in ds and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(path, "truncated DICOM file: an image without pixel data")
    if "TransferSyntaxUID" not in ds.file_meta:
        raise InputError(path, "the file meta has no TransferSyntaxUID")
    return ds


def _short_element(ds: Dataset) -> str | None:
    for tag in ds.keys():
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.length != UNDEFINED_LENGTH
            and isinstance(raw.value, bytes)
            and len(raw.value) < raw.length
        ):
            return f"{Tag(tag)} holds {len(raw.value)} of its {raw.length} bytes"
    return None
