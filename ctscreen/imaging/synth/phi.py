"""Fake but realistic protected health information, placed where real scanners and RIS put it.

Every series carries it so that de-identification is exercised on each case: the usual patient,
study and staff attributes, free text that repeats the name and record number, identifiers nested in
sequences, and a private block with a copy of the name, as some hospital systems add. All of it is
invented from the small lists below and deterministic for a case.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ctscreen.imaging.synth.sites import Scanner, Site

SURNAMES = ("Zhang", "Wang", "Li", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma", "Zhu",
            "Hu", "Guo", "He", "Lin", "Luo", "Gao", "Smith", "Garcia", "Nguyen", "Okafor", "Kowalski", "O'Brien",
            "Silva", "Haddad", "Novak", "Jensen-Holm", "Tanaka", "Ivanova", "Mensah", "Rossi")
GIVEN = {
    "M": ("Wei", "Jun", "Lei", "Qiang", "Hao", "Jian", "Ming", "Tao", "Bo", "Yong", "James", "Mohammed", "Lucas",
          "Daniel", "Kwame", "Piotr", "Mateo", "Hiroshi", "Omar", "Erik"),
    "F": ("Fang", "Na", "Li", "Min", "Jing", "Yan", "Xiu Ying", "Hui", "Ting", "Lan", "Maria", "Aisha", "Emma",
          "Sofia", "Ama", "Anna", "Mei", "Yuki", "Fatima", "Ingrid"),
}
STREETS = ("Maple Street", "Jiefang Road", "Station Road", "Hillside Avenue", "Zhongshan Road", "Park Lane",
           "Riverbank Road", "Willow Court", "Minzhu Street", "Orchard Way", "Heping Avenue", "Elm Close")
DISTRICTS = ("Eastlake", "Riverside", "Northgate", "Westhill", "Harbour District", "Greenfield", "Old Town", "New Port")
CITIES = ("Riverton", "Port Alden", "Kingsford", "Marlow Bay", "Ashby")
STUDY_DESCRIPTIONS = ("CT CHEST W/O CONTRAST", "CT THORAX PLAIN", "HRCT CHEST", "CHEST CT ROUTINE", "CT LUNG LOW DOSE")
COMPLAINTS = ("fever and dry cough for {d} days", "shortness of breath, fever {t} C", "cough with sputum, {d} days",
              "contact with a confirmed case, fever {t} C", "follow-up of a pulmonary nodule", "chest pain on exertion",
              "pre-operative chest assessment", "fatigue and low-grade fever for {d} days")
PRIVATE_GROUP = 0x0011
PRIVATE_CREATOR = "RIS EXPORT 2.1"


@dataclass(frozen=True)
class FakePHI:
    attributes: dict  # DICOM keyword -> value, copied into every slice
    private: tuple[tuple[int, str, str], ...]  # (element offset, VR, value) in PRIVATE_CREATOR's block


def _name(rng: np.random.Generator, sex: str) -> tuple[str, str]:
    return str(rng.choice(SURNAMES)), str(rng.choice(GIVEN[sex]))


def _phone(rng: np.random.Generator, area: str) -> str:
    return f"{area}-{int(rng.integers(0, 10000)):04d}"


def _dicom_name(surname: str, given: str) -> str:
    return f"{surname.upper()}^{given.upper()}"


def site_staff(site: Site) -> dict[str, list[str]]:
    """The site's radiologists, referrers and technologists: the same few names recur within a hospital."""
    rng = np.random.default_rng(zlib.crc32(site.key.encode()))
    sexes = rng.choice(["F", "M"], 14)
    names = [_dicom_name(*_name(rng, str(sex))) for sex in sexes]
    return {"radiologists": names[:4], "referrers": names[4:10], "technologists": names[10:]}


def station_name(site: Site, scanner: Scanner) -> str:
    return f"{site.code}CT{site.scanners.index(scanner.key) + 1:02d}"


def fake_phi(rng: np.random.Generator, site: Site, scanner: Scanner, sex: str, age: int, acquired: datetime) -> FakePHI:
    surname, given = _name(rng, sex)
    name = _dicom_name(surname, given)
    birth = acquired.date() - timedelta(days=int(age * 365.25) + int(rng.integers(1, 365)))  # aged ``age`` that day
    mrn = f"{site.mrn_prefix}{int(rng.integers(10**6, 10**7))}"
    accession = f"{acquired:%y%m%d}{int(rng.integers(1000, 10000))}"
    staff = site_staff(site)
    address = f"{int(rng.integers(1, 400))} {rng.choice(STREETS)}, {rng.choice(DISTRICTS)}, {rng.choice(CITIES)}"
    phone = _phone(rng, site.phone_area)
    relative_surname, relative_given = _name(rng, str(rng.choice(["F", "M"])))
    complaint = str(rng.choice(COMPLAINTS)).format(d=int(rng.integers(2, 10)), t=f"{rng.uniform(37.3, 39.6):.1f}")
    national_id = f"{int(rng.integers(10**9, 10**10))}{int(rng.integers(10**7, 10**8))}"

    other_ids = Dataset()
    other_ids.PatientID = national_id
    other_ids.IssuerOfPatientID = "NATIONAL ID"
    other_ids.TypeOfPatientID = "TEXT"
    request = Dataset()
    request.RequestedProcedureID = f"RP{accession}"
    request.ScheduledProcedureStepID = f"SPS{accession}"
    request.RequestedProcedureDescription = str(rng.choice(STUDY_DESCRIPTIONS))
    request.ReasonForTheRequestedProcedure = complaint
    request.RequestingPhysician = str(rng.choice(staff["referrers"]))

    attributes = {
        "PatientName": name,
        "PatientID": mrn,
        "IssuerOfPatientID": site.code,
        "PatientBirthDate": f"{birth:%Y%m%d}",
        "PatientSex": sex,
        "PatientAge": f"{age:03d}Y",
        "PatientAddress": address,
        "PatientTelephoneNumbers": phone,
        "OtherPatientIDsSequence": Sequence([other_ids]),
        "PatientComments": f"{complaint}. Next of kin: {relative_given} {relative_surname}, tel {_phone(rng, site.phone_area)}",
        "AdditionalPatientHistory": f"Pt {given} {surname} (MRN {mrn}), {complaint}",
        "InstitutionName": site.name,
        "InstitutionAddress": site.address,
        "InstitutionalDepartmentName": "Radiology",
        "StationName": station_name(site, scanner),
        "DeviceSerialNumber": f"{zlib.crc32((site.key + scanner.key).encode()) % 10**8:08d}",
        "SoftwareVersions": scanner.software,
        "ReferringPhysicianName": str(rng.choice(staff["referrers"])),
        "PerformingPhysicianName": str(rng.choice(staff["radiologists"])),
        "NameOfPhysiciansReadingStudy": str(rng.choice(staff["radiologists"])),
        "OperatorsName": str(rng.choice(staff["technologists"])),
        "AccessionNumber": accession,
        "StudyID": f"{int(rng.integers(10**4, 10**5))}",
        "StudyDescription": request.RequestedProcedureDescription,
        "ImageComments": f"{surname.upper()} {given} {mrn}",
        "RequestAttributesSequence": Sequence([request]),
    }
    private = ((0x01, "LO", f"{surname} {given}"), (0x02, "LO", mrn), (0x03, "LO", phone))
    return FakePHI(attributes, private)
