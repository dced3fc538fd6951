"""Training the lung-region network on the manifest's lung masks (the synthetic source's include the
subpleural and juxta-pleural lesions, consolidations and masses a threshold cuts out).

Each case's HU and masks are resampled once to the lung model's grid and cached by the case's
bytes and that grid, then streamed through the shared loop with scanner augmentation; the
checkpoint with the best mean validation lung Dice (post-processed, as it ships) is kept.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import Compose, RandSpatialCropSamplesd, SpatialPadd, Transform
from monai.utils import set_determinism
from tqdm import tqdm

from ctscreen.errors import InputError
from ctscreen.evaluation.metrics import dice
from ctscreen.imaging.preprocess import PreprocessedCase, PreprocessingParameters, apply_window
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.resample import resample_mask
from ctscreen.imaging.scanner_augment import ScannerAugmentationParameters, scanner_augmentation
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.lung_region import (
    LUNG_SPACING_ZYX,
    LUNG_WINDOW_ZYX,
    SPEC_FILE,
    WEIGHTS_FILE,
    WINDOW,
    LungModelSpec,
    lung_input,
    lung_mask_on_grid,
)
from ctscreen.inference.sliding_window import lesion_probability
from ctscreen.manifest import content_digest, read_manifest
from ctscreen.models import build_model
from ctscreen.training.cases import CachedCase, store
from ctscreen.training.config import OptimiserConfig, load_section
from ctscreen.training.data import epoch_batches
from ctscreen.training.loop import TrainingResult, fit
from ctscreen.training.segmentation import deep_supervision_loss
from ctscreen.training.split import split_by_patient


@dataclass
class LungTrainingConfig:
    """The ``lungs:`` section of ``params.yaml``."""

    model: str = "unet"
    profile: str = "small"
    spacing_zyx: list[float] = field(default_factory=lambda: list(LUNG_SPACING_ZYX))  # the lung model's grid, mm
    patch_zyx: list[int] = field(default_factory=lambda: list(LUNG_WINDOW_ZYX))  # training patch and inference window
    samples_per_case: int = 2
    deep_supervision_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])  # U-Net++ only
    validate_every: int = 1
    # the lung region is learnt from a few dozen cases: more cost training time for little, so at most
    # this many are used, taken in turn from every site and subtype (None: every case with a lung mask)
    max_cases: int | None = None
    # the retrain pipeline finds the lungs with the new model only from this validation lung Dice on,
    # and only where it keeps this share of the lesion voxels inside (a region that cuts lesions out
    # hides them from every later step); otherwise the classical extraction stays
    adopt_min_dice: float = 0.85
    adopt_min_lesion_inside: float = 0.9
    # 30 times the paper's rate: on 10 tiny cases small U-Net and V-Net reached validation Dice 0.91-0.94 in 8 epochs
    optimiser: OptimiserConfig = field(default_factory=lambda: OptimiserConfig(lr=3e-3, epochs=20))
    augmentation: ScannerAugmentationParameters = field(default_factory=ScannerAugmentationParameters)

    def __post_init__(self) -> None:
        if self.max_cases is not None and (isinstance(self.max_cases, bool) or not isinstance(self.max_cases, int) or self.max_cases < 2):
            raise ValueError(f"max_cases must be a whole number of at least 2 (training and validation), or null; got {self.max_cases!r}")

    @property
    def spec(self) -> LungModelSpec:
        return LungModelSpec(self.model, self.profile, tuple(self.spacing_zyx), tuple(self.patch_zyx))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_lung_config(path: str | Path | None = None, overrides: list[str] = ()) -> LungTrainingConfig:
    """Defaults, then the ``lungs`` section of ``path`` (if given), then ``key.sub=value`` overrides."""
    return load_section(LungTrainingConfig, "lungs", path, overrides)


def lung_cache_path(row: dict, cache_dir: Path, spec: LungModelSpec) -> Path:
    """Where a row's lung-grid arrays live: named by its files' bytes and the grid (not the network,
    so every architecture shares one cache)."""
    return Path(cache_dir) / f"{content_digest(row, json.dumps({'lung-grid': list(spec.spacing_zyx)}))}.npz"


def prepare_lung_case(row: dict, cache_dir: Path, spec: LungModelSpec) -> CachedCase:
    """A row's HU with its lung and lesion masks on the lung grid, cached once. HU rather than the
    network's input: the post-processing's body mask needs what the window clips."""
    cached = lung_cache_path(row, cache_dir, spec)
    if not cached.exists():
        if not row.get("lung_mask"):
            raise InputError(row["image"], f"case {row['case_id']} has no lung mask to train the lung-region model on")
        volume = load_volume(row["image"])
        _, grid = lung_input(volume, spec)
        masks = {c: resample_mask(load_volume(row[c]).hu > 0, volume, spec.spacing_zyx) if row.get(c) else None
                 for c in ("lung_mask", "lesion_mask")}
        whole = tuple(slice(0, n) for n in grid.shape_zyx)
        # the cache's one writer takes a preprocessed case: here the whole study on the lung grid, in HU
        store(PreprocessedCase(grid.hu, masks["lung_mask"], masks["lesion_mask"], whole, grid,
                               PreprocessingParameters(spacing_zyx=spec.spacing_zyx, window=WINDOW)), cached)
    return CachedCase(row["case_id"], int(row["label"] == "positive"), row["subtype"], row["site"], cached)


class LoadLungSample(Transform):
    """A cache entry as a channel-first sample: the network's input and its lung label."""

    def __call__(self, case: CachedCase) -> dict:
        prepared = case.load()
        return {"image": apply_window(prepared.image, WINDOW)[None], "label": prepared.lung_mask[None].astype(np.float32)}


def lung_patches(cases: list[CachedCase], config: LungTrainingConfig) -> Dataset:
    """Per case ``samples_per_case`` random patches, with scanner augmentation."""
    keys = ["image", "label"]
    patch = tuple(config.patch_zyx)
    return Dataset(list(cases), Compose([
        LoadLungSample(),
        SpatialPadd(keys, spatial_size=patch),
        RandSpatialCropSamplesd(keys, roi_size=patch, num_samples=config.samples_per_case, random_size=False),
        scanner_augmentation(patch, tuple(config.spacing_zyx), config.augmentation),
    ]))


def lung_batches(cases: list[CachedCase], config: LungTrainingConfig, seed: int):
    """Per epoch, the cases streamed through ``lung_patches`` and regrouped into batches."""
    return epoch_batches(cases, lambda ordered: lung_patches(ordered, config), seed, config.optimiser.data_workers,
                         config.optimiser.batch_size)


def validation_lungs(cases: list[CachedCase], spec: LungModelSpec):
    """Mean lung Dice and mean share of lesion voxels kept, on the lung grid, one case at a time (a
    model that finds no lung yet scores 0 there), and the score the best checkpoint is chosen by:
    their mean, for lesions are a small part of the lungs and Dice alone barely sees them cut out."""
    def validate(model) -> dict:
        scores, kept = [], []
        for cached in cases:
            case = cached.load()
            grid = CTVolume(case.image, spec.spacing_zyx)
            try:
                region = lung_mask_on_grid(lesion_probability(model, apply_window(case.image, WINDOW), spec.window_zyx), grid).astype(bool)
            except InputError:
                region = np.zeros(case.image.shape, bool)
            scores.append(dice(region, case.lung_mask))
            if case.lesion_mask.any():
                kept.append(float(region[case.lesion_mask > 0].mean()))
        figures = {"dice": float(np.mean(scores)), **({"lesion_inside": float(np.mean(kept))} if kept else {})}
        return figures | {"score": float(np.mean([figures["dice"], figures.get("lesion_inside", figures["dice"])]))}

    return validate


def adopts(config: LungTrainingConfig, validation: dict) -> bool:
    """Whether later steps find the lungs with a model of these validation figures (``validation_lungs``).
    Where the validation cases had no lesion, the share kept inside is unknown, and only a zero bound admits it."""
    inside = validation.get("lesion_inside")
    kept = inside >= config.adopt_min_lesion_inside if inside is not None else config.adopt_min_lesion_inside <= 0.0
    return validation.get("dice", 0.0) >= config.adopt_min_dice and kept


def spread_sample(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` rows, dealt in turn from every (site, subtype) group in a seeded order, so
    a few cases still span the scanners and the lesions; every row when ``limit`` is None or not reached."""
    if limit is None or len(rows) <= limit:
        return rows
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["site"], row["subtype"])].append(row)
    rng = np.random.default_rng(seed)
    queues = [[members[i] for i in rng.permutation(len(members))] for _, members in sorted(groups.items())]
    dealt = [queue[depth] for depth in range(max(map(len, queues))) for queue in queues if depth < len(queue)]
    return dealt[:limit]


def train_lung_region(manifest: str | Path, out_dir: str | Path, config: LungTrainingConfig = LungTrainingConfig(),
                      cache_dir: str | Path | None = None, validation_fraction: float = 0.25, seed: int = 0,
                      progress: bool = True) -> dict:
    """Train the lung-region network on ``manifest`` split by patient; writes ``out_dir/lungs/``:
    ``WEIGHTS_FILE`` and ``SPEC_FILE`` (what ``load_lung_model`` reads), the loop's checkpoints, and
    ``results.json`` (validation figures, history, split). An interrupted run resumes."""
    out = Path(out_dir) / "lungs"
    spec = config.spec
    rows = [r for r in read_manifest(manifest) if r.get("lung_mask")]
    if not rows:
        raise InputError(manifest, "no case with a lung mask to train the lung-region model on")
    rows = spread_sample(rows, config.max_cases, seed)
    assignment = split_by_patient(rows, fractions=(1.0 - validation_fraction, validation_fraction, 0.0), seed=seed)
    cache = Path(cache_dir) if cache_dir else Path(out_dir) / "cache" / "lungs"
    cases = [prepare_lung_case(r, cache, spec) for r in tqdm(rows, desc="lung inputs", unit="case", disable=not progress)]
    sets = {name: [c for c in cases if assignment[c.case_id] == name] for name in ("train", "validation")}
    if not all(sets.values()):
        raise ValueError(f"{manifest}: {len(cases)} case(s) leave the training or validation set empty "
                         f"(validation_fraction {validation_fraction}): add cases")
    set_determinism(seed)
    model = build_model(spec.name, spec.profile)
    result: TrainingResult = fit(model, deep_supervision_loss(config.deep_supervision_weights), lung_batches(sets["train"], config, seed),
                                 config.optimiser, out, validate=validation_lungs(sets["validation"], spec), metric="score",
                                 validate_every=config.validate_every, description=f"lungs {spec.name}", progress=progress)
    model.load_state_dict(torch.load(result.checkpoint, map_location="cpu", weights_only=False)["model"])
    torch.save(model.cpu().state_dict(), out / WEIGHTS_FILE)
    (out / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2))
    best = next((r.validation for r in result.history if r.epoch == result.best_epoch), {})
    summary = {
        "spec": spec.to_dict(),
        "config": config.to_dict(),
        "cases": {name: len(members) for name, members in sets.items()},
        "validation_dice": best.get("dice"),
        "validation_lesion_inside": best.get("lesion_inside"),
        "best_epoch": result.best_epoch,
        "adopted": adopts(config, best),
        "history": [r.__dict__ for r in result.history],
        "split": {c.case_id: assignment[c.case_id] for c in cases},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "weights": str(out / WEIGHTS_FILE), "spec_file": str(out / SPEC_FILE)}
