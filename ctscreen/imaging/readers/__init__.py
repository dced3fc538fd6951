"""Pluggable volume readers behind one registry: ``load_volume`` picks the reader that accepts a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ctscreen.errors import InputError
from ctscreen.imaging.volume import CTVolume


@dataclass(frozen=True)
class Reader:
    name: str
    accepts: Callable[[Path], bool]
    read: Callable[..., CTVolume]


_READERS: list[Reader] = []


def register_reader(reader: Reader) -> Reader:
    _READERS.append(reader)
    return reader


def reader_names() -> list[str]:
    return [r.name for r in _READERS]


def load_volume(path: str | Path, **options) -> CTVolume:
    """Read a CT volume from a DICOM folder or an image file, whichever reader accepts ``path``.

    Options go to the reader (``allow_gaps`` for DICOM series). Raises ``InputError`` naming the
    file and the problem on any input that cannot be used.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    for reader in _READERS:
        if reader.accepts(path):
            return reader.read(path, **options)
    raise InputError(
        path,
        "not a DICOM file or folder, nor a supported image format "
        f"({', '.join(sorted(SUPPORTED_SUFFIXES))})",
    )


from ctscreen.imaging.readers import dicom as _dicom  # noqa: E402  (registers itself)
from ctscreen.imaging.readers import image_file as _image_file  # noqa: E402
from ctscreen.imaging.readers.image_file import SUPPORTED_SUFFIXES  # noqa: E402

__all__ = ["Reader", "register_reader", "reader_names", "load_volume", "SUPPORTED_SUFFIXES"]
