"""Screening results as DICOM objects filed in the screened study, for the radiologist's viewer:
the lesion and lung masks as a Segmentation (``seg``), the probability, call and volumes as a
TID 1500 measurement report (``report``), both on the source CT series (``source``) and checked
with dciodvfy (``validation``)."""
