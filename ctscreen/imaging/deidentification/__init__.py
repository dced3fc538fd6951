"""DICOM de-identification internals: the PS3.15 profile table and the per-dataset engine.

The public entry point is :mod:`ctscreen.imaging.deidentify`.
"""
