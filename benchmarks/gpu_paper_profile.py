"""For a GPU machine: the paper-size pair (3D U-Net++ -> ResNet-50, paper profile), batch 1, fp32 and
fp16, on the paper's 128 x 256 x 256 patch — the figure to hold against the paper's 0.8 s per case.

    python benchmarks/gpu_paper_profile.py --out benchmarks/results

Writes ``gpu_paper_profile.json`` in the format of the other benchmarks. Not part of ``make bench``,
which runs on CPU machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from ctscreen.models import build_model  # noqa: E402
from ctscreen.models.classification import INPUT_ZYX  # noqa: E402
from ctscreen.models.segmentation import PATCH_ZYX  # noqa: E402

PAIR = ("unetpp", "resnet50")


def _forward_seconds(model, x, dtype, repeats: int = 10) -> float:
    times = []
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=dtype == "fp16"):
        for step in range(repeats + 2):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            if step >= 2:  # warm-up: cuDNN autotuning and allocation
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_paper_profile: no CUDA device; run this on a GPU machine", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    segmenter = build_model(PAIR[0], "paper").to(device).eval()
    classifier = build_model(PAIR[1], "paper").to(device).eval()
    seg_input = torch.rand(1, 1, *PATCH_ZYX["paper"], device=device)
    cls_input = torch.rand(1, 2, *INPUT_ZYX["paper"], device=device)
    result = {"device": torch.cuda.get_device_name(device), "pair": list(PAIR), "profile": "paper", "batch": 1, "timings_s": {}}
    for dtype in ("fp32", "fp16"):
        torch.cuda.reset_peak_memory_stats(device)
        seg = _forward_seconds(segmenter, seg_input, dtype)
        cls = _forward_seconds(classifier, cls_input, dtype)
        result["timings_s"][dtype] = {
            "segmentation_patch": round(seg, 4),
            "classification": round(cls, 4),
            "pair_one_patch": round(seg + cls, 4),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        }
    print(write_result(args.out, "gpu_paper_profile", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
