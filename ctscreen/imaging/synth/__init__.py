"""Synthetic multi-site chest CT: realistic cases for demos, tests, benchmarks and training.

No real COVID-19 data can ship, so this package draws patients (body, bones, mediastinum, lungs with
vessel and airway trees), lesions of five subtypes (COVID-19 and four hard negatives), scans them on
fictional hospitals' scanners (kernel blur, slice profile, correlated noise) and writes DICOM series
full of fake PHI, with lung and lesion masks on the same grid.

Dataset::

    generate_dataset(out_dir, cases, sites=3, seed=0, profile="small", progress=True) -> Path

writes ``out_dir/cases/<case_id>/{dicom/, lung_mask.nii.gz, lesion_mask.nii.gz}`` and returns
``out_dir/manifest.csv``. Case i depends only on (seed, i, sites), so ``cases=20`` repeats the 10
cases of ``cases=10`` and adds ten. Profiles (``PROFILES``): ``tiny`` 64 x 64 and at most 32 slices,
``small`` 128 x 128 and at most 64 slices (spacing widened, slice thickness kept), ``full`` 512 x 512
at the protocol's own slice spacing. The anatomy in mm is the same under every profile.

One volume in memory, without files::

    spec = make_case(seed, index, choose_sites(seed, sites))      -> CaseSpec
    grid = case_grid(spec, profile)                                -> Grid
    rendered = render_case(spec, grid)                             -> RenderedCase

``profile`` is a name or a ``Profile(name, matrix, max_slices)``: ``Profile("bench", 512, 300)``
gives a 512 x 512 series of at most 300 slices; ``clinical_grid(spec, 300)`` exactly 512 x 512 x 300
over the scanned range. Any ``Grid(shape_zyx, spacing_zyx, origin_xyz)`` in DICOM coordinates works.

``RenderedCase`` holds ``hu`` (float32, z y x), ``lung_mask`` and ``lesion_mask`` (uint8), ``tissue``
(uint8 ``Tissue`` labels of the ideal image), ``spacing_zyx`` and ``origin_xyz`` (DICOM patient
coordinates of voxel [0, 0, 0], identity orientation).
"""

from ctscreen.imaging.synth.canvas import Tissue
from ctscreen.imaging.synth.dataset import MANIFEST_COLUMNS, generate_dataset
from ctscreen.imaging.synth.render import RenderedCase, render_case
from ctscreen.imaging.synth.sites import SCANNERS, SITES, choose_sites
from ctscreen.imaging.synth.spec import PROFILES, SUBTYPES, CaseSpec, Grid, Profile, case_grid, clinical_grid, make_case

__all__ = [
    "generate_dataset", "render_case", "make_case", "case_grid", "clinical_grid", "choose_sites",
    "SUBTYPES", "PROFILES", "SITES", "SCANNERS", "MANIFEST_COLUMNS",
    "CaseSpec", "Grid", "Profile", "RenderedCase", "Tissue",
]
