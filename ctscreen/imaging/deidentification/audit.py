"""Does a DICOM dataset still carry identities? Central checks every incoming study with this, so
that a study an edge site forgot to de-identify is refused rather than stored.

The checks follow the Basic Profile table: the dataset must declare PatientIdentityRemoved = YES,
carry no private attributes, and hold no value in an attribute the profile removes. Whatever the
de-identifier was, a study that fails one of them is not accepted as de-identified.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from ctscreen.imaging.deidentification.profile import BASIC_PROFILE, REMOVE

_REMOVED = {tag for tag, rule in BASIC_PROFILE.items() if rule.action == REMOVE and rule.option is None}


def phi_findings(ds: Dataset) -> list[str]:
    """What in ``ds`` says it is not de-identified; empty when nothing does."""
    findings = []
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        findings.append("PatientIdentityRemoved is not YES")
    for elem in ds.iterall():
        if elem.tag.is_private:
            findings.append(f"private attribute {elem.tag} present")
        elif int(elem.tag) in _REMOVED and not elem.is_empty:
            findings.append(f"{BASIC_PROFILE[int(elem.tag)].name} {elem.tag} holds a value")
    return findings
