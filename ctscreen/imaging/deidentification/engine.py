"""Apply the Basic Profile to one dataset: the table's rules, then defence in depth for the rest.

Every replacement is derived from a secret key with HMAC-SHA256, so the same input always gives the
same output (a study keeps its structure, a patient keeps one pseudonym and one date shift across
files, studies and runs) while nobody without the key can link the output back to the input.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, timedelta

from pydicom.dataelem import DataElement
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID_dictionary

from ctscreen import __version__
from ctscreen.imaging.deidentification.profile import (
    BASIC_PROFILE,
    DUMMY,
    EMPTY,
    KEEP,
    RECURSE,
    REMOVE,
    RETAIN_DATES,
    RETAIN_PATIENT,
    UID,
)

SHIFT = "shift"
MIN_SHIFT_DAYS, MAX_SHIFT_DAYS = 365, 3650  # dates move back by one to ten years, per patient
DUMMY_TEXT = "DEIDENTIFIED"
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
DATE_VRS = {"DA", "DT", "TM"}

# UI attributes that name a kind of thing (a SOP class, a syntax, a coding scheme), not an instance:
# they identify no one, and replacing them would make the files unreadable.
CLASS_UID_KEYWORDS = {
    "SOPClassUID",
    "ReferencedSOPClassUID",
    "ReferencedSOPClassUIDInFile",
    "ReferencedTransferSyntaxUIDInFile",
    "RelatedGeneralSOPClassUID",
    "OriginalSpecializedSOPClassUID",
    "CodingSchemeUID",
    "ContextUID",
    "MappingResourceUID",
}

OPTIONS = (
    codes.DCM.BasicApplicationConfidentialityProfile,
    codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption,
    codes.DCM.RetainPatientCharacteristicsOption,
)
METHOD = (f"ctscreen {__version__}", *(code.meaning for code in OPTIONS))


class Deidentifier:
    """De-identifies datasets in place with replacements derived from ``key``."""

    def __init__(self, key: bytes):
        self._key = key
        self._uids: dict[str, str] = {}

    def _digest(self, domain: bytes, value: str) -> bytes:
        # the domain keeps a UID, a patient ID and a date offset from ever sharing a digest
        return hmac.new(self._key, domain + b"\0" + value.encode("utf-8"), hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """``2.25.<128-bit integer>``: a valid UID of at most 44 characters, the same for the same input."""
        if not value or value in UID_dictionary:
            return value
        if value not in self._uids:
            self._uids[value] = "2.25." + str(int.from_bytes(self._digest(b"uid", value)[:16], "big"))
        return self._uids[value]

    def pseudonym(self, patient: str) -> str:
        return "CTS-" + self._digest(b"patient", patient).hex()[:12].upper()

    def day_offset(self, patient: str) -> int:
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
        return MIN_SHIFT_DAYS + int.from_bytes(self._digest(b"date-offset", patient)[:8], "big") % span

    def apply(self, ds: Dataset) -> None:
        """De-identify a dataset read from a file, its file meta included."""
        _restore_sop_identity(ds)
        ds.preamble = bytes(128)  # dual-format files hide a whole TIFF header, PHI included, in here
        patient = _patient_identity(ds)
        self._clean(ds, self.day_offset(patient))
        ds.PatientID = ds.PatientName = self.pseudonym(patient)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = list(METHOD)
        ds.DeidentificationMethodCodeSequence = [_code_item(code) for code in OPTIONS]
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        ds.file_meta = meta

    def _clean(self, ds: Dataset, days: int) -> None:
        for elem in list(ds):
            action = _action(elem)
            if action == DUMMY and elem.VR == "SQ":
                action = EMPTY  # a sequence's items could hold anything: a dummy sequence is an empty one
            if action == REMOVE:
                del ds[elem.tag]
            elif action == EMPTY:
                elem.clear()
            elif action == DUMMY:
                elem.value = DUMMY_TEXT if elem.VR in TEXT_VRS else elem.empty_value
            elif action == UID:
                _map_values(elem, self.uid)
            elif action == SHIFT and elem.VR != "TM":  # whole days move; the time of day identifies no one
                _map_values(elem, lambda value: _shift_date(value, days))
            elif action == RECURSE:
                for item in elem.value:
                    self._clean(item, days)


def _action(elem: DataElement) -> str:
    tag = elem.tag
    if tag.is_private or tag.element == 0 or tag.group in (0x0000, 0x0002) or _is_curve_or_overlay(tag.group):
        return REMOVE
    rule = BASIC_PROFILE.get(tag)
    if rule is not None:
        if rule.option == RETAIN_PATIENT:
            return KEEP
        if rule.option == RETAIN_DATES and elem.VR in DATE_VRS:
            return SHIFT
        return rule.action
    keyword = keyword_for_tag(tag)
    if not keyword or elem.VR == "PN":  # unknown to the dictionary, or a person's name
        return REMOVE
    if elem.VR == "SQ":
        return RECURSE
    if elem.VR == "UI":
        return KEEP if keyword in CLASS_UID_KEYWORDS else UID
    if elem.VR in ("DA", "DT"):
        return SHIFT
    return KEEP


def _is_curve_or_overlay(group: int) -> bool:
    """Curves (50xx) and overlays (60xx) can carry drawn text; the profile removes their data."""
    return group % 2 == 0 and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF)


def _map_values(elem: DataElement, fn) -> None:
    if elem.VM > 1:
        elem.value = [fn(str(v)) for v in elem.value]
    elif elem.VM == 1:
        elem.value = fn(str(elem.value))


def _shift_date(value: str, days: int) -> str:
    """Move a DA or DT value back by ``days``; a value that cannot be moved exactly is emptied."""
    digits = value.replace(".", "") if len(value) == 10 and value[4] == "." else value  # ACR-NEMA YYYY.MM.DD
    if len(digits) < 8 or not digits[:8].isdigit():
        return ""
    try:
        shifted = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])) - timedelta(days=days)
    except (ValueError, OverflowError):
        return ""
    return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}" + digits[8:]


def _restore_sop_identity(ds: Dataset) -> None:
    """Some exports empty SOP Class/Instance UID in the dataset but keep them in the file meta."""
    for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not ds.get(keyword) and ds.file_meta.get(meta_keyword):
            setattr(ds, keyword, ds.file_meta[meta_keyword].value)


def _patient_identity(ds: Dataset) -> str:
    """The original Patient ID; without one, each study stands for its own patient."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    return patient_id or "study:" + str(ds.get("StudyInstanceUID", "") or "")


def _code_item(code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item
