"""The screening masks as a DICOM Segmentation (SEG) on the source CT, for the radiologist's viewer.

Two BINARY segments, made by the screening model (algorithm type AUTOMATIC): 1 the lesions, 2 the
lungs, coloured as in the screening overlay (lesions red, lungs green). Frames sit on the source
images' own positions and empty ones are left out. A study without lesions still gets its SEG:
the lesion segment is described but has no frames, which a viewer shows as an empty segment, so
the radiologist sees that the model found nothing rather than wondering whether it ran.
"""

from __future__ import annotations

import platform

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ctscreen import __version__
from ctscreen.imaging.volume import CTVolume
from serving.results.source import mask_on_source, result_uid

LESION, LUNG = 1, 2  # segment numbers
LESION_LABEL, LUNG_LABEL = "Lesion", "Lung"
SEG_SERIES_NUMBER = 901
MANUFACTURER = "ctscreen"


def _segment(number: int, label: str, category: Code, kind: Code, color: tuple[int, int, int],
             algorithm: hd.AlgorithmIdentificationSequence, tracking_uid: str) -> hd.seg.SegmentDescription:
    """One segment; the lesions' anatomic region is the lung, the lungs need none beyond themselves."""
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=tracking_uid,
        tracking_id=label,
        anatomic_regions=[codes.SCT.Lung] if kind != codes.SCT.Lung else None,
        display_color=hd.color.CIELabColor.from_rgb(*color),
    )


def _binary(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.integer) and mask.min(initial=0) >= 0 and mask.max(initial=0) <= 1):
        raise ValueError(f"{name} mask must hold 0 and 1 only (dtype {mask.dtype}, values {mask.min()}..{mask.max()})")
    return mask.astype(np.uint8)


def write_segmentation(source_datasets: list[Dataset], lesion_mask: np.ndarray, lung_mask: np.ndarray, model_name: str,
                       model_version: int | str, volume: CTVolume | None = None, series_number: int = SEG_SERIES_NUMBER,
                       device_serial_number: str | None = None) -> hd.seg.Segmentation:
    """The SEG of one screening. ``source_datasets``: from ``read_source_series``. The masks are
    (z, y, x) with one slice per source image in that order, or, with ``volume``, on the grid of
    the ``CTVolume`` the screening ran on (mapped to the source images by ``mask_on_source``).
    ``device_serial_number`` names the machine that screened (default: its host name)."""
    masks = []
    for name, mask in (("lesion", lesion_mask), ("lung", lung_mask)):
        mask = _binary(mask, name)
        if volume is not None:
            mask = mask_on_source(mask, volume, source_datasets)
        elif mask.shape != (len(source_datasets), int(source_datasets[0].Rows), int(source_datasets[0].Columns)):
            raise ValueError(f"{name} mask of shape {mask.shape} is not one slice per source image "
                             f"({len(source_datasets)} of {source_datasets[0].Rows}x{source_datasets[0].Columns})")
        masks.append(mask)
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name, family=codes.cid7162.ArtificialIntelligence, version=str(model_version))

    def uid(what: str) -> str:
        return result_uid(source_datasets, model_name, model_version, what)

    segments = [
        _segment(LESION, LESION_LABEL, codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion, (255, 0, 0), algorithm,
                 uid("lesion")),
        _segment(LUNG, LUNG_LABEL, codes.SCT.AnatomicalStructure, codes.SCT.Lung, (0, 255, 0), algorithm, uid("lung")),
    ]
    return hd.seg.Segmentation(
        source_images=source_datasets,
        pixel_array=np.stack(masks, axis=-1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=uid("seg series"),
        series_number=series_number,
        sop_instance_uid=uid("seg"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model_name,
        software_versions=[f"ctscreen {__version__}", f"{model_name} {model_version}"],
        device_serial_number=device_serial_number or platform.node() or "unknown",
        content_label="CTSCREEN",
        content_description=f"Lesions and lungs by {model_name} {model_version}"[:64],
        series_description=f"AI lesions and lungs ({model_name} {model_version})"[:64],
        omit_empty_frames=True,
    )


def read_segmentation_mask(seg_dataset: Dataset, source_datasets: list[Dataset]) -> dict[str, np.ndarray]:
    """Each segment's mask (uint8, z, y, x), keyed by segment label, with one slice per source
    image in ``source_datasets``' order; images the SEG has no frame on are empty."""
    seg = hd.seg.Segmentation.from_dataset(seg_dataset, copy=True)
    numbers = list(seg.segment_numbers)
    pixels = seg.get_pixels_by_source_instance(
        [str(ds.SOPInstanceUID) for ds in source_datasets],
        segment_numbers=numbers,
        assert_missing_frames_are_empty=True,
        dtype=np.uint8,
    )
    return {seg.get_segment_description(n).segment_label: pixels[..., i] for i, n in enumerate(numbers)}
