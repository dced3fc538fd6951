"""The CLI as a user meets it: a real subprocess, JSON on stdout, one clear line and exit 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series

INFO_KEYS = {
    "shape_zyx", "spacing_zyx", "origin", "hu_min", "hu_max", "hu_mean", "modality", "manufacturer", "model",
    "slice_thickness", "series_instance_uid", "transfer_syntax", "n_files_used", "n_files_skipped", "warnings",
}


def ctscreen(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CTSCREEN_DEID_KEY", "MLFLOW_TRACKING_URI")}
    if home is not None:
        env["CTSCREEN_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "ctscreen.cli", *args], capture_output=True, text=True, timeout=300, env=env)


def test_info_json_describes_a_dicom_series(tmp_path, phantom_hu):
    description = SeriesDescription(manufacturer="GE MEDICAL SYSTEMS", model="LightSpeed VCT", slice_thickness=1.25)
    write_ct_series(phantom_hu, (1.25, 0.7, 0.7), tmp_path / "s", description=description, transfer_syntax="rle")
    result = ctscreen("info", str(tmp_path / "s"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert INFO_KEYS <= set(info)
    assert info["shape_zyx"] == list(phantom_hu.shape)
    assert info["spacing_zyx"] == [1.25, 0.7, 0.7]
    assert info["manufacturer"] == "GE MEDICAL SYSTEMS" and info["model"] == "LightSpeed VCT"
    assert info["transfer_syntax"] == "RLE Lossless"
    assert info["series_instance_uid"] == description.series_instance_uid
    assert info["hu_min"] == float(np.rint(phantom_hu).min())
    assert info["n_files_used"] == phantom_hu.shape[0] and info["n_files_skipped"] == 0


def test_info_json_on_real_jpeg2000_series(real_j2k_series):
    result = ctscreen("info", str(real_j2k_series), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["shape_zyx"] == [20, 512, 512] and info["modality"] == "CT"
    assert info["transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"


@pytest.mark.parametrize(
    "make_input, expected",
    [
        pytest.param(lambda d: d / "missing", "no such file", id="missing"),
        pytest.param(lambda d: (d / "empty").mkdir() or d / "empty", "empty folder", id="empty-folder"),
        pytest.param(lambda d: (d / "x.txt").write_text("hi") and d / "x.txt", "not a DICOM file", id="not-dicom"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make_input, expected):
    path = make_input(tmp_path)
    result = ctscreen("info", str(path), "--json")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_every_verb_has_help():
    for verb in ["info", "lungs", "preprocess", "deidentify", "synth", "demo", "dataset", "registry"]:
        result = ctscreen(verb, "--help")
        assert result.returncode == 0 and verb in result.stdout


def test_synth_then_deidentify_through_the_cli(tmp_path):
    result = ctscreen("synth", str(tmp_path / "data"), "--cases", "2", "--sites", "2", "--seed", "3", "--profile", "tiny")
    assert result.returncode == 0, result.stderr
    manifest = (tmp_path / "data" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 3 and manifest[0].startswith("case_id,")
    series = tmp_path / "data" / "cases" / "case-00000" / "dicom"

    missing_key = ctscreen("deidentify", str(series), str(tmp_path / "deid"))
    assert missing_key.returncode == 2 and "key" in missing_key.stderr.lower()

    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    result = ctscreen("deidentify", str(series), str(tmp_path / "deid"), "--key-file", str(key), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n_written"] == len(list(series.iterdir()))
    again = ctscreen("deidentify", str(series), str(tmp_path / "deid"), "--key-file", str(key))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_dataset_init_ingest_and_version_through_the_cli(tmp_path):
    from ctscreen.dataset.synthetic import synthetic_intake
    from tests.dataset.bad_cases import plant_bad_cases

    intake = tmp_path / "intake"
    synthetic_intake(intake, cases=2, key=b"k" * 32, profile="tiny", progress=False)
    planted = plant_bad_cases(intake)
    home = tmp_path / "home"
    assert ctscreen("dataset", "init", home=home).returncode == 0
    result = ctscreen("dataset", "ingest", str(intake), "--json", home=home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == ["case-00000", "case-00001"] and report["version"]["cases"] == 2
    assert {r["case_id"] for r in report["rejected"]} == set(planted)
    assert all(f"rejected {case_id}:" in result.stderr for case_id in planted)
    version = json.loads(ctscreen("dataset", "version", "--json", home=home).stdout)
    assert version == report["version"]
    again = ctscreen("dataset", "init", home=home)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_registry_verbs_on_an_empty_registry(tmp_path):
    listing = ctscreen("registry", "list", home=tmp_path)
    assert listing.returncode == 0 and "no registered versions yet" in listing.stdout
    rollback = ctscreen("registry", "rollback", home=tmp_path)
    assert rollback.returncode == 2 and "no champion to roll back" in rollback.stderr
    promote = ctscreen("registry", "promote", "3", home=tmp_path)
    assert promote.returncode == 2 and "no version 3" in promote.stderr
