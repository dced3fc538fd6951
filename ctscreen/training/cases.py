"""Manifest cases preprocessed once and cached, keyed by the case's bytes and the preprocessing
parameters, so unchanged cases are never preprocessed twice and changed ones always are. Training
and evaluation pass cases around as references into the cache and load one when they use it, so
memory does not grow with the number of cases."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ctscreen.imaging.preprocess import LungRegion, PreprocessedCase, PreprocessingParameters, preprocess
from ctscreen.imaging.readers import load_volume
from ctscreen.manifest import content_digest, read_manifest


@dataclass
class PreparedCase:
    """A case's model-ready arrays, loaded from the cache."""

    case_id: str
    label: int  # 1 positive (COVID-19), 0 negative
    subtype: str
    site: str
    image: np.ndarray  # float32 in [0, 1] on the lung-cropped 1 x 1 x 2.5 mm grid
    lung_mask: np.ndarray  # uint8
    lesion_mask: np.ndarray  # uint8 (zeros where the case has no lesion mask)


@dataclass(frozen=True)
class CachedCase:
    """A case's identity and where its preprocessed arrays wait in the cache."""

    case_id: str
    label: int  # 1 positive (COVID-19), 0 negative
    subtype: str
    site: str
    path: Path

    def load(self) -> PreparedCase:
        with np.load(self.path) as data:
            return PreparedCase(self.case_id, self.label, self.subtype, self.site, data["image"].astype(np.float32),
                                data["lung_mask"], data["lesion_mask"])


def cache_path(row: dict, cache_dir: Path, params: PreprocessingParameters) -> Path:
    """Where a manifest row's preprocessed arrays live: named by its files' bytes and the parameters."""
    return Path(cache_dir) / f"{content_digest(row, json.dumps(params.to_dict(), sort_keys=True))}.npz"


def store(case: PreprocessedCase, path: Path) -> None:
    lesions = case.lesion_mask if case.lesion_mask is not None else np.zeros_like(case.lung_mask)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial.npz")  # its own per writer: two runs may prepare one case at once
    np.savez(partial, image=case.image.astype(np.float16), lung_mask=case.lung_mask, lesion_mask=lesions.astype(np.uint8))
    partial.replace(path)  # a crash never leaves a half-written cache entry behind


def prepare_case(row: dict, cache_dir: Path, params: PreprocessingParameters, lung_region: LungRegion | None = None) -> CachedCase:
    cached = cache_path(row, cache_dir, params)
    if not cached.exists():
        volume = load_volume(row["image"])
        lesion = load_volume(row["lesion_mask"]).hu > 0 if row.get("lesion_mask") else None
        store(preprocess(volume, params, lesion_mask=lesion, lung_region=lung_region), cached)
    return CachedCase(row["case_id"], int(row["label"] == "positive"), row["subtype"], row["site"], cached)


def prepare_cases(manifest: str | Path, cache_dir: str | Path, params: PreprocessingParameters = PreprocessingParameters(),
                  case_ids: set[str] | None = None, progress: bool = True, lung_region: LungRegion | None = None) -> list[CachedCase]:
    """``lung_region``: the network ``params.lung_model`` names, where it names one."""
    rows = [r for r in read_manifest(manifest) if case_ids is None or r["case_id"] in case_ids]
    return [prepare_case(r, Path(cache_dir), params, lung_region) for r in tqdm(rows, desc="preprocessing", unit="case", disable=not progress)]
