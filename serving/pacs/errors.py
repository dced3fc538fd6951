"""The one error the PACS side raises: which peer, which instance, which status; never credentials."""

from __future__ import annotations

from ctscreen.errors import CTScreenError


class PacsError(CTScreenError):
    """A DICOM or DICOMweb exchange with a PACS that failed: refused, unreachable, or answered with an error."""
