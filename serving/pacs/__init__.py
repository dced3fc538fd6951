"""The hospital's PACS as the edge service meets it: Orthanc run on loopback for tests and demos,
a DICOM C-STORE receiver, a C-STORE sender, and a DICOMweb client."""
