"""Signed bundles and a real Triton server, shared by the serving tests."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from ctscreen.digests import file_sha256
from ctscreen.imaging.preprocess import PreprocessingParameters
from ctscreen.inference.bundle import load_bundle, save_bundle
from ctscreen.inference.signature import generate_signing_key, public_key_of, sign_bundle
from ctscreen.models import build_model
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.models.segmentation import PATCH_ZYX


def make_signed_bundle(root: Path, key: Path, seed: int, segmentation: str = "fcn8s", threshold: float = 0.5, lungs: Path | None = None):
    """Freshly initialised tiny networks as a bundle, signed as the register step signs it; with
    ``lungs`` (a trained lung-region model) it finds the lungs with that network."""
    torch.manual_seed(seed)
    preprocessing = PreprocessingParameters(lung_model=file_sha256(lungs / "lung_region.pt") if lungs else None)
    save_bundle(root, build_model(segmentation, "tiny"), {"name": segmentation, "profile": "tiny", "patch_zyx": list(PATCH_ZYX["tiny"])},
                build_model("resnet50", "tiny"), {"name": "resnet50", "profile": "tiny", "input_zyx": list(INPUT_ZYX["tiny"])},
                preprocessing, threshold=threshold, metrics={"test": {"auc": 0.5}}, lungs=lungs)
    sign_bundle(root, key)
    return load_bundle(root)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> Path:
    return generate_signing_key(tmp_path_factory.mktemp("keys") / "bundle-signing.key")


@pytest.fixture(scope="session")
def public_key(signing_key) -> Path:
    return public_key_of(signing_key)


@pytest.fixture(scope="session")
def signed_bundles(tmp_path_factory, signing_key, tiny_lung_model):
    """Two different signed bundles (two releases): the first finds the lungs by the classical
    extraction, the second with a trained lung-region network."""
    root = tmp_path_factory.mktemp("signed")
    return [make_signed_bundle(root / "bundle-1", signing_key, seed=1),
            make_signed_bundle(root / "bundle-2", signing_key, seed=2, lungs=tiny_lung_model)]


@pytest.fixture
def fresh_copy(tmp_path):
    def copy(bundle):
        return load_bundle(shutil.copytree(bundle.root, tmp_path / f"copy-{bundle.root.name}"))
    return copy


@contextmanager
def running_orthanc(tmp_path_factory, name: str, **options):
    """A real Orthanc for a package of tests, under a CTSCREEN_HOME of its own (its loopback shim is
    built there), stopped afterwards; the tests skip where Orthanc cannot run."""
    from serving.pacs import orthanc

    patch = pytest.MonkeyPatch()
    patch.setenv("CTSCREEN_HOME", str(tmp_path_factory.mktemp(f"{name}-home")))
    state = tmp_path_factory.mktemp(name)
    try:
        try:
            server = orthanc.start(state, **options)
        except orthanc.PacsUnavailable as exc:
            pytest.skip(str(exc))
        yield server
    finally:
        orthanc.stop(state)
        patch.undo()
