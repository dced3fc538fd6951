"""CT input/output, de-identification, the paper's preprocessing and the synthetic CT source."""

from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.volume import CTVolume, SeriesMetadata, write_mask

__all__ = ["CTVolume", "SeriesMetadata", "load_volume", "write_mask"]
