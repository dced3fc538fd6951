"""Can the paper-size pair (3D U-Net++ -> 3D ResNet-50, paper profile) screen a study on this CPU in 66 s
within 8 GB, at unchanged accuracy? Whole-crop segmentation by sliding window (Gaussian blending), then
classification at the paper's input size, under several configurations:

    eager_fp32_patch   PyTorch eager, the profile's training patch as window (paper: 128 x 256 x 256)
    ort_fp32_patch     ONNX Runtime, every graph optimisation, one intra-op thread per core, same window
    ort_fp32_bounded   ONNX Runtime with a smaller window and less overlap, which caps memory
    ort_int8_bounded   the same with static int8 quantisation (QDQ, per-channel weights) of both models

Each configuration runs in its own process, so its peak RSS (VmHWM) is its own; a configuration whose
estimate (paper profile only, from timings on this 2-core machine) exceeds the time limit or the free
memory is skipped with the reason, and one that runs past either is killed. The weights are freshly
initialised (latency and memory do not depend on training), so accuracy is judged by agreement with
the eager fp32 reference on the same weights: probability maps, lesion masks (Dice, p > 0.5 inside the
lungs, as screening thresholds them) and the COVID-19 probability; int8 is also held against fp32 on
its own window. U-Net++ normalises per instance, so a smaller window changes the output itself, not
only its rounding. A configuration meets the goal's 66 s if preprocessing + segmentation +
classification take at most that (model loading is a one-off per serving process, reported apart).

    .venv/bin/python benchmarks/paper_pair_cpu.py [--out benchmarks/results] [--only NAME ...]
    .venv/bin/python benchmarks/paper_pair_cpu.py --quick     # small models on a coarse grid, about a minute

Run by hand: a full run took about 10 minutes on a 2-core machine, and the paper-window configurations
grow past 22 GB before they are killed, so the file is not named ``bench_*.py`` and ``make bench`` (run_all.py) leaves it out. Writes
``paper_pair_cpu.json`` (``paper_pair_cpu_quick.json`` with --quick) like the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from ctscreen.imaging.preprocess import PreprocessingParameters, TARGET_SPACING_ZYX, preprocess  # noqa: E402
from ctscreen.imaging.synth import case_grid, choose_sites, clinical_grid, make_case, render_case  # noqa: E402
from ctscreen.imaging.volume import CTVolume  # noqa: E402
from ctscreen.inference.bundle import ModelBundle  # noqa: E402
from ctscreen.inference.pair import classifier_input, covid_scores, lesion_mask  # noqa: E402
from ctscreen.inference.sliding_window import lesion_probability, onnx_predictor  # noqa: E402
from ctscreen.models import build_model  # noqa: E402
from ctscreen.models.classification import INPUT_ZYX  # noqa: E402
from ctscreen.models.export import export_onnx  # noqa: E402
from ctscreen.models.segmentation import PATCH_ZYX, SIZE_DIVISOR, check_window  # noqa: E402

PAIR = ("unetpp", "resnet50")
GOAL_S, GOAL_GB = 66.0, 8.0
REFERENCE = "eager_fp32_patch"
THREADS = len(os.sched_getaffinity(0))

# Paper profile on this 2-core machine, only to skip hopeless configurations: seconds per megavoxel of
# windows (eager: 244 s for one 128 x 256 x 256 window; ONNX Runtime: 38.9 s for one 64 x 128 x 128 window
# on a shared machine; int8 QDQ ran 2.1x faster than fp32 on 32 x 64 x 64), the classifier's 56 s eager,
# and GB per window megavoxel (eager 18 GB on 128 x 256 x 256, ONNX Runtime 2.3 GB on 64 x 128 x 128)
# above about 1 GB for the runtime, the models and the volume.
PAPER_SECONDS_PER_MVOX = {("torch", "fp32"): 29.0, ("onnx", "fp32"): 37.0, ("onnx", "int8"): 18.0}
PAPER_CLASSIFY_S = 56.0
PAPER_GB_PER_MVOX, PAPER_BASE_GB = 2.2, 1.0


@dataclass(frozen=True)
class Mode:
    profile: str
    study: str  # "clinical": 512 x 512 x 300 slices; otherwise a synth profile name
    spacing_zyx: tuple[float, float, float]
    patch_zyx: tuple[int, int, int]
    bounded_zyx: tuple[int, int, int]
    bounded_overlap: float
    calibration_zyx: tuple[int, int, int]  # segmentation calibration patches for int8


# The paper's grid and sizes; the bounded window spans the synthetic crop (88 x 150 x 224) in y and x with
# two windows along z (3.4 megavoxels in all against the paper window's 8.4).
FULL = Mode("paper", "clinical", TARGET_SPACING_ZYX, PATCH_ZYX["paper"], (48, 160, 224), 0.1, PATCH_ZYX["small"])
# Checks the script in about a minute: small models on a coarse grid (the crop is 44 x 38 x 57).
QUICK = Mode("small", "tiny", (5.0, 4.0, 4.0), PATCH_ZYX["small"], (16, 32, 48), 0.1, (16, 32, 32))


@dataclass(frozen=True)
class Config:
    name: str
    backend: str  # "torch" or "onnx"
    precision: str  # "fp32" or "int8"
    window_zyx: tuple[int, int, int]
    overlap: float
    compare_to: tuple[str, ...] = (REFERENCE,)


def configurations(mode: Mode) -> list[Config]:
    return [
        Config(REFERENCE, "torch", "fp32", mode.patch_zyx, 0.25, compare_to=()),
        Config("ort_fp32_patch", "onnx", "fp32", mode.patch_zyx, 0.25),
        Config("ort_fp32_bounded", "onnx", "fp32", mode.bounded_zyx, mode.bounded_overlap),
        Config("ort_int8_bounded", "onnx", "int8", mode.bounded_zyx, mode.bounded_overlap, (REFERENCE, "ort_fp32_bounded")),
    ]


def log(message: str) -> None:
    print(f"[paper_pair_cpu] {message}", file=sys.stderr, flush=True)


def windows(image_zyx, window_zyx, overlap: float) -> int:
    """How many windows MONAI's sliding window runs (the image is padded up to the window first)."""
    count = 1
    for size, roi in zip(image_zyx, window_zyx):
        size = max(size, roi)
        count *= 1 if size == roi else math.ceil((size - roi) / max(int(roi * (1 - overlap)), 1)) + 1
    return count


def proc_gb(path: str, key: str) -> float:
    """A kB field of a /proc status file (meminfo, a process's status) in GB."""
    fields = dict(line.split(":", 1) for line in Path(path).read_text().splitlines())
    return int(fields[key].split()[0]) * 1024 / 1e9


def supervise(command: list[str], limit_s: int, cap_gb: float) -> tuple[int, str | None]:
    """Run ``command``, killing it past ``limit_s`` or once its RSS passes ``cap_gb`` (rather than let the
    kernel's OOM killer pick a victim on a shared machine); its exit status and why it was killed."""
    process = subprocess.Popen(command)
    deadline = time.monotonic() + limit_s
    while process.poll() is None:
        time.sleep(0.5)
        try:
            rss_gb = proc_gb(f"/proc/{process.pid}/status", "VmRSS")
        except (FileNotFoundError, KeyError):  # exiting
            rss_gb = 0.0
        reason = (f"killed after the {limit_s} s limit" if time.monotonic() > deadline else
                  f"killed at {rss_gb:.1f} GB RSS, past the {cap_gb:.1f} GB free" if rss_gb > cap_gb else None)
        if reason:
            process.kill()
            return process.wait(), reason
    return process.returncode, None


# --- parent: study, models, configurations, agreement -------------------------------------------------


def prepare_study(mode: Mode, work: Path) -> dict:
    spec = make_case(seed=0, index=2, sites=choose_sites(0, 1))  # bench_screening.py's study
    grid = clinical_grid(spec, 300) if mode.study == "clinical" else case_grid(spec, mode.study)
    log(f"rendering a {'x'.join(map(str, grid.shape_zyx[::-1]))} (x, y, z) synthetic study")
    rendered = render_case(spec, grid)
    start = time.perf_counter()
    case = preprocess(CTVolume(rendered.hu, grid.spacing_zyx, grid.origin_xyz), PreprocessingParameters(spacing_zyx=mode.spacing_zyx))
    seconds = time.perf_counter() - start
    np.save(work / "image.npy", case.image)
    np.save(work / "lungs.npy", case.lung_mask > 0)
    log(f"preprocessed in {seconds:.1f} s: lung crop {case.image.shape} (z, y, x) at {mode.spacing_zyx} mm")
    return {"shape_zyx": list(grid.shape_zyx), "spacing_zyx": list(grid.spacing_zyx), "crop_zyx": list(case.image.shape),
            "crop_spacing_zyx": list(mode.spacing_zyx), "preprocess_s": round(seconds, 3)}


def prepare_models(mode: Mode, work: Path) -> None:
    """Freshly initialised weights as a bundle's files: state dicts and ONNX.

    ONNX export traces a small example (the graphs have dynamic spatial axes) so that it costs neither the
    paper window's memory nor its minutes."""
    torch.manual_seed(0)
    segmenter, classifier = build_model(PAIR[0], mode.profile).eval(), build_model(PAIR[1], mode.profile).eval()
    torch.save(segmenter.state_dict(), work / "segmentation.pt")
    torch.save(classifier.state_dict(), work / "classification.pt")
    export_onnx(segmenter, torch.zeros(1, 1, 16, 32, 48), work / "segmentation.onnx")
    export_onnx(classifier, torch.zeros(1, 2, 32, 64, 64), work / "classification.onnx")


def prepare_int8(mode: Mode, work: Path) -> dict:
    """int8 versions of both ONNX models, calibrated on patches of the study itself."""
    image, lungs = np.load(work / "image.npy"), np.load(work / "lungs.npy").astype(np.float32)
    rng = np.random.default_rng(0)
    patches = []
    for _ in range(4):
        start = [int(rng.integers(0, max(s - p, 0) + 1)) for s, p in zip(image.shape, mode.calibration_zyx)]
        patches.append(image[tuple(slice(b, b + p) for b, p in zip(start, mode.calibration_zyx))][None])
    # channel 1 is a lesion probability map; the whole lungs and none of them span its [0, 1] range
    half = tuple(s // 2 for s in INPUT_ZYX[mode.profile])
    samples = [classifier_input(image, lesion_map, lungs, half).numpy() for lesion_map in (lungs, np.zeros_like(lungs))]
    start = time.perf_counter()
    log(f"int8: calibrating on {len(patches)} patches of {mode.calibration_zyx} and {len(samples)} classifier inputs of {half}")
    quantise(work / "segmentation.onnx", work / "segmentation.int8.onnx", patches)
    quantise(work / "classification.onnx", work / "classification.int8.onnx", samples)
    return {"segmentation_patches": len(patches), "patch_zyx": list(mode.calibration_zyx), "classifier_inputs": len(samples),
            "classifier_input_zyx": list(half), "seconds": round(time.perf_counter() - start, 1)}


def quantise(source: Path, target: Path, samples: list[np.ndarray]) -> None:
    """Static int8, QDQ with per-channel weights: ONNX Runtime fuses it into QLinearConv, which runs 3D
    convolutions (here 2.1x faster than fp32 for the paper U-Net++); dynamic quantisation (ConvInteger)
    ran it 5x slower than fp32, so it is not offered."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Samples(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(samples)

        def get_next(self):
            sample = next(self.remaining, None)
            return None if sample is None else {"input": sample[None].astype(np.float32)}

    quantize_static(str(source), str(target), Samples(), quant_format=QuantFormat.QDQ, per_channel=True)


def estimate(mode: Mode, config: Config, crop_zyx) -> dict | None:
    if mode.profile != "paper":
        return None
    megavoxels = windows(crop_zyx, config.window_zyx, config.overlap) * math.prod(config.window_zyx) / 1e6
    return {"seconds": round(megavoxels * PAPER_SECONDS_PER_MVOX[config.backend, config.precision] + PAPER_CLASSIFY_S),
            "peak_gb": round(math.prod(config.window_zyx) / 1e6 * PAPER_GB_PER_MVOX + PAPER_BASE_GB, 1)}


def run_configuration(mode: Mode, config: Config, work: Path, crop_zyx, preprocess_s: float, limit_s: int) -> dict:
    count = windows(crop_zyx, config.window_zyx, config.overlap)
    row = {**asdict(config), "windows": count, "window_megavoxels_total": round(count * math.prod(config.window_zyx) / 1e6, 2),
           "classifier_input_zyx": list(INPUT_ZYX[mode.profile]), "threads": THREADS, "estimate": estimate(mode, config, crop_zyx)}
    free_gb = proc_gb("/proc/meminfo", "MemAvailable")
    if row["estimate"] and row["estimate"]["seconds"] > limit_s:
        return {**row, "status": "skipped", "reason": f"estimated {row['estimate']['seconds']} s exceeds the {limit_s} s limit"}
    if row["estimate"] and row["estimate"]["peak_gb"] > free_gb:
        return {**row, "status": "skipped", "reason": f"estimated {row['estimate']['peak_gb']} GB exceeds the {free_gb:.1f} GB available"}
    spec = work / f"{config.name}.spec.json"
    spec.write_text(json.dumps({"config": asdict(config), "profile": mode.profile, "work": str(work)}))
    log(f"{config.name}: {count} window(s) of {config.window_zyx}, estimate {row['estimate'] or 'n/a'}, limit {limit_s} s")
    returncode, killed = supervise([sys.executable, __file__, "--child", str(spec)], limit_s, cap_gb=free_gb - 0.5)
    result_path = work / f"{config.name}.result.json"
    child = json.loads(result_path.read_text()) if result_path.is_file() else {}
    if killed or returncode != 0:
        return {**row, "status": "failed", "reason": killed or child.get("error") or f"exit status {returncode}"}
    screening_s = preprocess_s + child["segment_s"] + child["classify_s"]
    log(f"{config.name}: segment {child['segment_s']} s, classify {child['classify_s']} s, peak {child['peak_rss_gb']} GB")
    return {**row, "status": "ok", **child, "screening_s": round(screening_s, 3),
            "meets_66s": screening_s <= GOAL_S, "meets_8gb": child["peak_rss_gb"] <= GOAL_GB}


def agreement(work: Path, name: str, reference: str, rows: dict, lungs: np.ndarray) -> dict:
    """How far ``name``'s outputs are from ``reference``'s on the same weights and the same study."""
    p, q = np.load(work / f"{name}.npy"), np.load(work / f"{reference}.npy")
    a, b = lesion_mask(p, lungs), lesion_mask(q, lungs)
    voxels = int(a.sum() + b.sum())
    return {
        "max_abs_diff_probability": float(np.abs(p - q).max()),
        "mean_abs_diff_probability": float(np.abs(p - q).mean()),
        "dice_lesion_mask": 2 * int((a & b).sum()) / voxels if voxels else 1.0,
        "lesion_voxels": [int(a.sum()), int(b.sum())],
        "covid_probability_diff": abs(rows[name]["covid_probability"] - rows[reference]["covid_probability"]),
    }


def main(args) -> Path:
    import onnxruntime

    mode = QUICK if args.quick else FULL
    if args.bounded_window:
        mode = replace(mode, bounded_zyx=tuple(args.bounded_window))
    if args.bounded_overlap is not None:
        mode = replace(mode, bounded_overlap=args.bounded_overlap)
    chosen = [c for c in configurations(mode) if not args.only or c.name in args.only]
    with tempfile.TemporaryDirectory(prefix="paper_pair_cpu_") as tmp:
        work = Path(tmp)
        study = prepare_study(mode, work)
        log(f"building {PAIR[0]} and {PAIR[1]} ({mode.profile} profile), exporting ONNX")
        prepare_models(mode, work)
        calibration = prepare_int8(mode, work)
        rows = {c.name: run_configuration(mode, c, work, study["crop_zyx"], study["preprocess_s"], args.limit_s) for c in chosen}
        lungs = np.load(work / "lungs.npy")
        for config in chosen:
            if rows[config.name]["status"] == "ok":
                rows[config.name]["agreement"] = {ref: agreement(work, config.name, ref, rows, lungs) for ref in config.compare_to
                                                  if rows.get(ref, {}).get("status") == "ok"}
    result = {
        "goal": {"screening_s": GOAL_S, "peak_rss_gb": GOAL_GB, "screening_s_counts": "preprocess + segment + classify"},
        "quick": args.quick,
        "pair": {"segmentation": PAIR[0], "classification": PAIR[1], "profile": mode.profile},
        "study": study,
        "onnxruntime": onnxruntime.__version__,
        "limit_s": args.limit_s,
        "int8_calibration": calibration,
        "configurations": rows,
    }
    return write_result(args.out, "paper_pair_cpu_quick" if args.quick else "paper_pair_cpu", result)


# --- child: one configuration, in its own process ------------------------------------------------------


def child(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    config, work = Config(**spec["config"]), Path(spec["work"])
    result_path = work / f"{config.name}.result.json"
    try:
        result = screen(config, spec["profile"], work)
    except Exception as exc:  # recorded as the configuration's reason
        result_path.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500]}))
        raise
    result_path.write_text(json.dumps(result))
    return 0


def screen(config: Config, profile: str, work: Path) -> dict:
    torch.set_num_threads(THREADS)
    image, lungs = np.load(work / "image.npy"), np.load(work / "lungs.npy")
    start = time.perf_counter()
    if config.backend == "torch":
        bundle = ModelBundle(work, {"name": PAIR[0], "profile": profile}, {"name": PAIR[1], "profile": profile},
                             PreprocessingParameters(), threshold=0.5)
        segmenter, classifier = bundle.networks()
    else:
        suffix = ".int8.onnx" if config.precision == "int8" else ".onnx"
        segmenter = onnx_predictor(work / f"segmentation{suffix}", threads=THREADS)
        classifier = onnx_predictor(work / f"classification{suffix}", threads=THREADS)
    load_s = time.perf_counter() - start
    log(f"{config.name}: models loaded in {load_s:.1f} s; segmenting")
    start = time.perf_counter()
    probability_map = lesion_probability(segmenter, image, config.window_zyx, overlap=config.overlap, batch_size=1)
    segment_s = time.perf_counter() - start
    log(f"{config.name}: segmented in {segment_s:.1f} s; classifying")
    start = time.perf_counter()
    covid = float(covid_scores(classifier, classifier_input(image, probability_map, lungs, INPUT_ZYX[profile])[None])[0])
    classify_s = time.perf_counter() - start
    np.save(work / f"{config.name}.npy", probability_map)
    return {"load_models_s": round(load_s, 3), "segment_s": round(segment_s, 3), "classify_s": round(classify_s, 3),
            "total_s": round(segment_s + classify_s, 3), "peak_rss_gb": round(proc_gb("/proc/self/status", "VmHWM"), 2),
            "covid_probability": covid}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--quick", action="store_true", help="small models on a coarse grid: checks the script in about a minute")
    parser.add_argument("--only", nargs="+", help="configurations to run (agreement needs the reference, " + REFERENCE + ")")
    parser.add_argument("--limit-s", type=int, default=1200, help="per-configuration time limit (default 1200)")
    parser.add_argument("--bounded-window", type=int, nargs=3, metavar=("Z", "Y", "X"), help=f"bounded window, multiples of {SIZE_DIVISOR}")
    parser.add_argument("--bounded-overlap", type=float, help="bounded window overlap (default 0.1)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bounded_window:
        try:
            check_window(arguments.bounded_window)
        except ValueError as error:
            parser.error(f"--bounded-window: {error}")
    if arguments.child:
        sys.exit(child(arguments.child))
    print(main(arguments))
