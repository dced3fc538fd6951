"""A model bundle as a new numbered version of a Triton model repository.

Release ``N`` writes version ``N`` of each of its models (``serving.triton.config``)::

    ctscreen-lung-region/N/...                   the bundle's lung-region network, where it has one
    ctscreen-segmentation/config.pbtxt           version policy: N and the version before it
    ctscreen-segmentation/N/model.onnx           the bundle's graph, byte for byte
    ctscreen-segmentation/N/model.py             cpu target: ONNX Runtime in the Python backend
    ctscreen-segmentation/N/config.json          this version's configuration (what a node loads it with)
    ctscreen-classification/...                  the same for the classifier
    ctscreen-screening/N/model.py                the entry point (BLS)
    ctscreen-screening/N/bundle/                 the signed bundle, whole (its signature covers it)
    ctscreen-screening/N/reference.npz           synthetic reference cases and the outputs computed here
    ctscreen-screening/N/facts.json              the release's facts

Earlier versions stay where they are. Everything of version ``N`` is written into a staging folder
first and moved into place model by model, the configurations last, so a server polling the
repository never meets half a version.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ctscreen.errors import CTScreenError
from ctscreen.imaging.preprocess import preprocess
from ctscreen.imaging.synth import case_grid, choose_sites, make_case, render_case
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.bundle import ModelBundle, bundle_digest, load_bundle
from ctscreen.inference.lung_region import lung_input
from ctscreen.inference.onnx_runtime import onnx_session
from ctscreen.inference.screen import LocalPair
from ctscreen.inference.signature import verify_bundle
from ctscreen.models.export import torch_output
from serving.triton import models
from serving.triton.config import CLASSIFICATION, LUNG_REGION, NETWORK_FILES, SCREENING, SEGMENTATION, release_configs, to_pbtxt, with_versions
from serving.triton.location import FACTS, open_repository

# ONNX against PyTorch on the same reference input, largest absolute difference of the logits allowed:
# graph optimisations reorder float32 arithmetic, nothing more.
PARITY_TOLERANCE = 1e-3
# A node's smoke test against the outputs computed here: the same graphs in the same ONNX Runtime
# settings reproduce them to rounding (batching and thread counts may reorder sums).
SMOKE_TOLERANCE = 1e-4
# Synthetic reference cases (seed, index) shipped with every release: a COVID-19 case and a healthy one
# of the tiny profile, so no patient data travels and a smoke test takes seconds.
REFERENCE_CASES = ((11, 0), (11, 3))
NETWORK_CODE, ENTRY_CODE = "onnx_network.py", "screening.py"


class BuildError(CTScreenError):
    """A bundle that cannot become a release: unsigned, tampered, or its ONNX graphs not the networks'."""


@dataclass(frozen=True)
class BuiltRelease:
    version: int
    repository: Path
    facts: dict
    created: bool  # False when this bundle was already in the repository as ``version``
    location: str  # the repository as addressed: its path, or its S3 URL (``repository`` is then the local mirror)

    def files(self) -> dict[str, Path]:
        """Every file of the release by its path in the repository (what a release store publishes)."""
        return {path.relative_to(self.repository).as_posix(): path for model in release_models(self.facts)
                for path in sorted((self.repository / model / str(self.version)).rglob("*")) if path.is_file()}


def release_bundle(repository: str | Path, version: int) -> ModelBundle:
    """The bundle release ``version`` ships (what its Triton models run)."""
    return load_bundle(Path(repository) / SCREENING / str(version) / "bundle")


def build_release(bundle: ModelBundle, repository: str | Path, public_key: str | Path, facts: dict | None = None, target: str = "cpu",
                  python_env: str | None = None) -> BuiltRelease:
    """Version N+1 of ``repository`` (a path or an S3 URL) from ``bundle``, after checking its model
    signature against ``public_key`` and its ONNX graphs against its PyTorch weights. ``python_env``:
    the environment Triton's Python stub runs in (default: this interpreter's)."""
    location = open_repository(repository)
    verify_bundle(bundle.root, public_key)
    digest = bundle_digest(bundle.root)
    known = location.versions()
    for version in known:
        if location.facts(version).get("bundle_sha256") == digest:
            return BuiltRelease(version, location.local, location.facts(version), created=False, location=location.url)
    parity = onnx_parity(bundle)
    version = (known or [0])[-1] + 1
    configs = release_configs(target, python_env or (sys.prefix if target == "cpu" else None), [version], bundle.lungs is not None)
    facts = {**(facts or {}), "version": version, "bundle": bundle.name, "bundle_sha256": digest, "threshold": bundle.threshold,
             "models": list(configs), "lung_region": "network" if bundle.lungs is not None else "classical",
             "target": target, "onnx_parity_max_abs": parity, "smoke_tolerance": SMOKE_TOLERANCE,
             "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    staging = location.local / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    _write_version(bundle, staging, version, configs, target, facts)
    kept = {model: [v for v in known[-1:] if model in release_models(location.facts(v))] + [version] for model in configs}
    location.put_version(staging, version, {model: to_pbtxt(with_versions(config, kept[model])) for model, config in configs.items()})
    shutil.rmtree(staging)
    return BuiltRelease(version, location.local, facts, created=True, location=location.url)


def release_models(facts: dict) -> list[str]:
    """The Triton models of a release, from its facts (releases before the lung-region network: three)."""
    return facts.get("models", [SEGMENTATION, CLASSIFICATION, SCREENING])


def onnx_parity(bundle: ModelBundle) -> float:
    """Largest absolute difference between each network's ONNX graph and its PyTorch weights on a seeded
    reference input; refuses the bundle beyond ``PARITY_TOLERANCE``."""
    segmenter, classifier = bundle.networks()
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    networks = [(segmenter, NETWORK_FILES[SEGMENTATION], (1, 1, *bundle.segmentation["patch_zyx"])),
                (classifier, NETWORK_FILES[CLASSIFICATION], (1, 2, *bundle.classification["input_zyx"]))]
    lungs = bundle.lung_region("torch")
    if lungs is not None:
        networks.append((lungs.predictor, NETWORK_FILES[LUNG_REGION], (1, 1, *lungs.spec.window_zyx)))
    for network, file, shape in networks:
        example = torch.rand(shape, generator=generator)
        expected = torch_output(network, example)
        actual = onnx_session(bundle.root / file).run(["output"], {"input": example.numpy()})[0]
        difference = float(np.abs(actual - expected).max())
        if not difference <= PARITY_TOLERANCE:
            raise BuildError(f"{bundle.root / file}: the ONNX graph differs from the PyTorch weights by {difference:.2e} "
                             f"(tolerance {PARITY_TOLERANCE:.0e}) on the reference input")
        worst = max(worst, difference)
    return worst


def reference_cases(bundle: ModelBundle) -> dict[str, np.ndarray]:
    """The synthetic reference cases preprocessed with the bundle's parameters, and the pair's outputs
    on them as ``ctscreen screen --backend onnx`` computes them (and the lung-region network's, where
    the bundle has one, on the case's lung-grid input)."""
    pair = LocalPair(bundle, "onnx")
    arrays: dict[str, np.ndarray] = {}
    for number, (seed, index) in enumerate(REFERENCE_CASES):
        spec = make_case(seed, index, choose_sites(seed, 1))
        grid = case_grid(spec, "tiny")
        rendered = render_case(spec, grid)
        case = preprocess(CTVolume(rendered.hu, grid.spacing_zyx, grid.origin_xyz), bundle.preprocessing, lung_region=pair.lung_region)
        output = pair(case.image, case.lung_mask)
        if pair.lung_region is not None:  # the lung-region network's logits on the case's first window, for a node to check
            window = first_window(lung_input(case.resampled, pair.lung_region.spec)[0], pair.lung_region.spec.window_zyx)
            arrays |= {f"{number}/lung_window": window,
                       f"{number}/lung_logits": pair.lung_region.predictor(torch.from_numpy(window)).numpy()}
        arrays |= {f"{number}/image": case.image, f"{number}/lung_mask": case.lung_mask.astype(np.uint8),
                   f"{number}/lesion_probability": output.probability_map, f"{number}/covid_probability": np.float32(output.covid_probability)}
    return arrays


def first_window(image: np.ndarray, window_zyx: tuple[int, int, int]) -> np.ndarray:
    """(1, 1, *window): the image's first sliding window, zero-padded where the image is smaller."""
    out = np.zeros((1, 1, *window_zyx), np.float32)
    part = image[tuple(slice(0, w) for w in window_zyx)]
    out[(0, 0, *(slice(0, n) for n in part.shape))] = part
    return out


def _write_version(bundle: ModelBundle, staging: Path, version: int, configs: dict, target: str, facts: dict) -> None:
    code = Path(models.__file__).parent
    for model, config in configs.items():
        folder = staging / model / str(version)
        folder.mkdir(parents=True)
        if model == SCREENING:
            shutil.copyfile(code / ENTRY_CODE, folder / "model.py")
        else:
            if target == "cpu":  # on a GPU the networks run in the native onnxruntime backend
                shutil.copyfile(code / NETWORK_CODE, folder / "model.py")
            shutil.copyfile(bundle.root / NETWORK_FILES[model], folder / "model.onnx")
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    entry = staging / SCREENING / str(version)
    shutil.copytree(bundle.root, entry / "bundle")
    np.savez_compressed(entry / "reference.npz", **reference_cases(bundle))
    (entry / FACTS).write_text(json.dumps(facts, indent=2, default=str))


