"""Write a HU volume as a CT Image Storage series, for the synthetic source, tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGLSLossless,
    PYDICOM_IMPLEMENTATION_UID,
    RLELossless,
    UID,
    generate_uid,
)

from ctscreen.errors import OutputError

TRANSFER_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "deflate": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-ls": JPEGLSLossless,
    "j2k-lossless": JPEG2000Lossless,
    "j2k": JPEG2000,
}
RESCALE_INTERCEPT = -1024.0


@dataclass
class SeriesDescription:
    """What a scanner writes around the pixels: patient, study, series and equipment attributes.

    ``attributes`` holds any further DICOM keywords (PHI included) copied into every slice, and
    ``private`` vendor-style private elements as (group, creator, element, VR, value).
    """

    study_instance_uid: str = field(default_factory=generate_uid)
    series_instance_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    manufacturer: str = "ctscreen"
    model: str = "synthetic"
    kernel: str = "STANDARD"
    slice_thickness: float | None = None
    series_number: int = 1
    acquired: datetime = field(default_factory=lambda: datetime(2020, 2, 1, 10, 0, 0))
    attributes: dict = field(default_factory=dict)
    private: tuple[tuple[int, str, int, str, object], ...] = ()


def write_ct_series(
    hu: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    out_dir: str | Path,
    description: SeriesDescription | None = None,
    origin: tuple[float, float, float] | None = None,
    transfer_syntax: str = "explicit",
    lossy_ratio: int = 10,
) -> list[Path]:
    """One file per axial slice, feet-to-head, with ImagePositionPatient on an identity orientation.

    SOP instance UIDs derive from the series UID and the slice index, so the same description
    writes byte-identical files (a data-versioning tool sees no change).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputError(out_dir, "folder is not empty; refusing to mix two series")
    out_dir.mkdir(parents=True, exist_ok=True)
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer syntax {transfer_syntax!r}; choose from {sorted(TRANSFER_SYNTAXES)}")
    syntax = TRANSFER_SYNTAXES[transfer_syntax]
    d = description or SeriesDescription()
    dz, dy, dx = (float(s) for s in spacing_zyx)
    nz, ny, nx = hu.shape
    if origin is None:
        origin = (-dx * (nx - 1) / 2, -dy * (ny - 1) / 2, -dz * (nz - 1))
    stored = np.clip(np.rint(hu - RESCALE_INTERCEPT), 0, 4095).astype(np.uint16)
    thickness = d.slice_thickness if d.slice_thickness is not None else dz
    date, time = d.acquired.strftime("%Y%m%d"), d.acquired.strftime("%H%M%S")

    paths = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[d.series_instance_uid, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = d.study_instance_uid
        ds.SeriesInstanceUID = d.series_instance_uid
        ds.FrameOfReferenceUID = d.frame_of_reference_uid
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Manufacturer = d.manufacturer
        ds.ManufacturerModelName = d.model
        ds.ConvolutionKernel = d.kernel
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
        ds.SeriesNumber = d.series_number
        ds.InstanceNumber = k + 1
        ds.SliceThickness = f"{thickness:g}"
        ds.SpacingBetweenSlices = f"{dz:g}"
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [f"{origin[0]:.4f}", f"{origin[1]:.4f}", f"{origin[2] + k * dz:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = f"{origin[2] + k * dz:.4f}"
        ds.PixelSpacing = [f"{dy:g}", f"{dx:g}"]
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = f"{RESCALE_INTERCEPT:g}"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "-600", "1500"
        ds.BurnedInAnnotation = "NO"
        for keyword, value in d.attributes.items():
            setattr(ds, keyword, value)
        for group, creator, element, vr, value in d.private:
            ds.private_block(group, creator, create=True).add_new(element, vr, value)
        ds.PixelData = stored[k].tobytes()
        if syntax.is_compressed:
            kwargs = {"j2k_cr": [lossy_ratio]} if syntax == JPEG2000 else {}
            ds.compress(UID(syntax), stored[k], **kwargs)
        else:
            ds.file_meta.TransferSyntaxUID = syntax
        path = out_dir / f"slice_{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
