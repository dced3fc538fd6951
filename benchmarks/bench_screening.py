"""Screening latency per stage on a 512 x 512 x 300 study, PyTorch eager against ONNX Runtime on the
same input in the same run, and training throughput (voxels per second) of every model.

Latency does not depend on what the weights learned, so the bundle holds freshly initialised
small-profile networks of the paper's winning pair (3D U-Net++ -> ResNet-50).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import write_result
from monai.losses import DiceCELoss

from ctscreen.imaging.dicom_writer import write_ct_series
from ctscreen.imaging.preprocess import PreprocessingParameters
from ctscreen.imaging.synth import choose_sites, clinical_grid, make_case, render_case
from ctscreen.inference.bundle import load_bundle, save_bundle
from ctscreen.inference.screen import screen_study
from ctscreen.models import build_model, list_models
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.models.segmentation import PATCH_ZYX

PAIR = ("unetpp", "resnet50")
PROFILE = "small"
REPEATS = 3


def _bundle(root: Path):
    torch.manual_seed(0)
    save_bundle(root, build_model(PAIR[0], PROFILE), {"name": PAIR[0], "profile": PROFILE, "patch_zyx": list(PATCH_ZYX[PROFILE])},
                build_model(PAIR[1], PROFILE), {"name": PAIR[1], "profile": PROFILE, "input_zyx": list(INPUT_ZYX[PROFILE])},
                PreprocessingParameters(), threshold=0.5, metrics={})
    return load_bundle(root)


def _latency(study: Path, bundle, out: Path) -> dict:
    runs: dict[str, list[dict]] = {"torch": [], "onnx": []}
    for repeat in range(REPEATS):
        for backend in ("torch", "onnx") if repeat % 2 == 0 else ("onnx", "torch"):
            runs[backend].append(screen_study(study, bundle, out / backend, backend=backend)["timings_s"])
    median = {b: {stage: round(statistics.median(r[stage] for r in rs), 3) for stage in rs[0]} for b, rs in runs.items()}
    return {
        "per_stage_median_s": median,
        "ratio_onnx_over_torch": {stage: round(median["onnx"][stage] / median["torch"][stage], 3)
                                  for stage in ("segment", "classify", "total") if median["torch"][stage]},
        "repeats": REPEATS,
    }


def _throughput(name: str, task: str) -> dict:
    torch.manual_seed(0)
    model = build_model(name, PROFILE).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4)
    if task == "segmentation":
        shape, loss_fn = PATCH_ZYX[PROFILE], DiceCELoss(to_onehot_y=True, softmax=True)
        x, y = torch.rand(2, 1, *shape), (torch.rand(2, 1, *shape) > 0.9).float()

        def loss(out):
            return loss_fn(out[0] if isinstance(out, (list, tuple)) else out, y)
    else:
        shape, criterion = INPUT_ZYX[PROFILE], torch.nn.BCEWithLogitsLoss()
        x, y = torch.rand(2, 2, *shape), torch.tensor([[1.0], [0.0]])

        def loss(out):
            return criterion(out, y)

    times = []
    for step in range(4):
        start = time.perf_counter()
        optimiser.zero_grad()
        loss(model(x)).backward()
        optimiser.step()
        if step:  # the first step pays for allocation
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"task": task, "batch": 2, "input_zyx": list(shape), "seconds_per_step": round(seconds, 3),
            "voxels_per_second": round(x[:, :1].numel() / seconds)}


def run(out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = make_case(seed=0, index=2, sites=choose_sites(0, 1))
        grid = clinical_grid(spec, 300)
        write_ct_series(render_case(spec, grid).hu, grid.spacing_zyx, tmp / "study", origin=grid.origin_xyz)
        result = {
            "study": {"shape_zyx": list(grid.shape_zyx), "spacing_zyx": list(grid.spacing_zyx)},
            "pair": {"segmentation": PAIR[0], "classification": PAIR[1], "profile": PROFILE},
            "screening_latency": _latency(tmp / "study", _bundle(tmp / "bundle"), tmp / "out"),
            "training_throughput": {name: _throughput(name, task) for task in ("segmentation", "classification")
                                    for name in list_models(task)},
        }
    return write_result(out_dir, "screening_and_training", result)
