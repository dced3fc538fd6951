"""The CT volume every reader returns and every later step consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk


@dataclass
class SeriesMetadata:
    """Key acquisition facts of a series, kept for QC, site statistics and reports."""

    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    slice_thickness: float | None = None
    kernel: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    transfer_syntax: str | None = None
    n_files_used: int = 1
    n_files_skipped: int = 0


@dataclass
class CTVolume:
    """HU voxels in (z, y, x) order with the patient-space geometry of the ITK convention (LPS).

    ``spacing_zyx`` follows the array axes; ``origin`` is the (x, y, z) position of voxel [0, 0, 0]
    and ``direction`` the 3 x 3 matrix whose columns are the x, y, z index axes in patient space.
    """

    hu: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: SeriesMetadata = field(default_factory=SeriesMetadata)
    source: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu.shape)

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing_zyx)) / 1000.0

    def to_sitk(self, array: np.ndarray | None = None) -> sitk.Image:
        """This volume's geometry around ``array`` (default: the HU voxels)."""
        image = sitk.GetImageFromArray(self.hu if array is None else array)
        copy_geometry(self, image)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, **kwargs) -> "CTVolume":
        return cls(
            hu=sitk.GetArrayFromImage(image),
            spacing_zyx=tuple(float(s) for s in reversed(image.GetSpacing())),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=np.array(image.GetDirection(), dtype=float).reshape(3, 3),
            **kwargs,
        )

    def info(self) -> dict:
        """The summary ``ctscreen info --json`` prints."""
        hu = self.hu
        meta = asdict(self.metadata)
        return {
            "path": str(self.source) if self.source else None,
            "shape_zyx": list(self.shape_zyx),
            "spacing_zyx": [round(s, 6) for s in self.spacing_zyx],
            "origin": [round(o, 6) for o in self.origin],
            "direction": [round(float(d), 6) for d in self.direction.ravel()],
            "hu_min": float(hu.min()),
            "hu_max": float(hu.max()),
            "hu_mean": round(float(hu.mean(dtype=np.float64)), 3),
            "modality": meta["modality"],
            "manufacturer": meta["manufacturer"],
            "model": meta["model"],
            "slice_thickness": meta["slice_thickness"],
            "kernel": meta["kernel"],
            "study_instance_uid": meta["study_instance_uid"],
            "series_instance_uid": meta["series_instance_uid"],
            "transfer_syntax": meta["transfer_syntax"],
            "n_files_used": meta["n_files_used"],
            "n_files_skipped": meta["n_files_skipped"],
            "warnings": list(self.warnings),
        }


def copy_geometry(volume: CTVolume, image: sitk.Image) -> None:
    image.SetSpacing(tuple(float(s) for s in reversed(volume.spacing_zyx)))
    image.SetOrigin(tuple(float(o) for o in volume.origin))
    image.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))


def write_mask(volume: CTVolume, mask: np.ndarray, path: str | Path) -> Path:
    """Write a label mask on ``volume``'s grid (NIfTI, NRRD or MHA by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask.shape != volume.hu.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the volume's {volume.hu.shape}")
    sitk.WriteImage(volume.to_sitk(mask.astype(np.uint8)), str(path), useCompression=True)
    return path
