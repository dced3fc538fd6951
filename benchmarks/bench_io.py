"""DICOM series loading against SimpleITK's ImageSeriesReader, and the whole preprocessing, on a
512 x 512 x 300 uncompressed clinical-size series."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from common import compare, timed, write_result

from ctscreen.imaging.dicom_writer import write_ct_series
from ctscreen.imaging.lungs import extract_lungs
from ctscreen.imaging.preprocess import TARGET_SPACING_ZYX, preprocess
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.resample import resample_volume
from ctscreen.imaging.synth import choose_sites, clinical_grid, make_case, render_case

SLICES = 300


def _sitk_series(folder: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def run(out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        spec = make_case(seed=0, index=0, sites=choose_sites(0, 1))
        grid = clinical_grid(spec, SLICES)
        write_ct_series(render_case(spec, grid).hu, grid.spacing_zyx, folder, origin=grid.origin_xyz)
        ours, baseline = load_volume(folder), _sitk_series(folder)
        if not np.array_equal(ours.hu, baseline):
            raise AssertionError("ctscreen and SimpleITK read different HU values")
        load = compare(lambda: load_volume(folder), lambda: _sitk_series(folder), repeats=5)
        resampled = resample_volume(ours, TARGET_SPACING_ZYX)
        result = {
            "series": {"shape_zyx": list(ours.shape_zyx), "spacing_zyx": list(ours.spacing_zyx), "transfer_syntax": "Explicit VR Little Endian"},
            "dicom_load_vs_simpleitk": load,
            "preprocess": {
                "total": timed(lambda: preprocess(ours), repeats=3),
                "resample_to_1x1x2.5mm": timed(lambda: resample_volume(ours, TARGET_SPACING_ZYX), repeats=3),
                "lung_extraction": timed(lambda: extract_lungs(resampled), repeats=3),
                "output_shape_zyx": list(preprocess(ours).image.shape),
            },
        }
    return write_result(out_dir, "io_and_preprocessing", result)
