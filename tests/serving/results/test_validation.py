"""dciodvfy as the results' validator: it finds what is wrong, and says when it cannot run."""

from __future__ import annotations

import pytest

from ctscreen.errors import InputError
from serving.results import validation
from serving.results.seg import write_segmentation
from serving.results.validation import ValidatorMissing, dciodvfy_problems, verify

from .conftest import RESULT


def test_a_broken_seg_is_reported_naming_the_attribute(ct_series, dciodvfy, tmp_path):
    seg = write_segmentation(ct_series["sources"], ct_series["lesions"], ct_series["lungs"], RESULT["model"]["name"], 1)
    assert dciodvfy_problems(seg) == []
    del seg.SegmentSequence[0].SegmentLabel
    seg.save_as(tmp_path / "broken.dcm")
    problems = dciodvfy_problems(tmp_path / "broken.dcm")
    assert problems and all(p.startswith("Error") for p in problems)
    assert any("SegmentLabel" in p for p in problems)
    assert verify(tmp_path / "broken.dcm").iod == "Segmentation"


def test_a_file_that_is_not_dicom_is_all_problems_and_an_absent_one_an_input_error(dciodvfy, tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert any("Information Object Not found" in p for p in dciodvfy_problems(tmp_path / "notes.txt"))
    with pytest.raises(InputError, match="absent.dcm: no such file"):
        verify(tmp_path / "absent.dcm")


def test_missing_dciodvfy_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(validation.shutil, "which", lambda name: None)
    monkeypatch.setattr(validation, "DEBIAN_FALLBACK", tmp_path / "dciodvfy")
    with pytest.raises(ValidatorMissing, match="dicom3tools"):
        dciodvfy_problems(tmp_path / "any.dcm")
