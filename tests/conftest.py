"""Shared fixtures: the real CT of ../shared/data/real-ct, and small DICOM series written on the fly."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist every worker shares the cores: each (and the servers and CLIs it starts, which
# inherit this) gets its share of threads. Two workers with all the cores each spin their OpenMP
# threads against each other, and training ran five times slower than with one thread each.
if "PYTEST_XDIST_WORKER" in os.environ:
    _THREADS = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, _THREADS)

import numpy as np
import pytest

REAL_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct"


# Fixtures that take minutes to build (a session's or a package's): under ``--dist loadgroup`` the tests
# using one go to one worker, in the order they were collected, so it is built once rather than on
# each. The edge node (its own Triton) is one: its tests carry its release state from one to the next.
SHARED_FIXTURES = ("trained_pairs", "stages", "node")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        used = [name for name in SHARED_FIXTURES if name in getattr(item, "fixturenames", ())]
        if used:
            item.add_marker(pytest.mark.xdist_group(used[0]))


def pytest_configure(config):
    if "PYTEST_XDIST_WORKER" in os.environ:  # in case a plugin imported torch before the variables were set
        import torch

        torch.set_num_threads(int(_THREADS))


def _real_ct_path(name: str) -> Path:
    path = REAL_CT / name
    if not path.exists():
        pytest.skip(f"real CT fixture {path} is absent (it ships with this project's shared/ folder, not with a plain clone)")
    return path


@pytest.fixture
def real_chest_ct() -> Path:
    """pyradiomics' chest CT (NRRD), 512 x 512 x 48 at 0.57 x 0.57 x 5 mm, with a nodule label."""
    return _real_ct_path("lung1_image.nrrd")


@pytest.fixture
def real_nodule_label() -> Path:
    return _real_ct_path("lung1_label.nrrd")


@pytest.fixture
def real_j2k_series() -> Path:
    """TotalSegmentator's 20-slice JPEG 2000 lossless DICOM series (upper abdomen, lung bases)."""
    return _real_ct_path("abdomen_ct_dicom_j2k")


@pytest.fixture
def phantom_hu() -> np.ndarray:
    """A small deterministic HU volume: body ellipse with two air-filled 'lungs' and noise."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[0:12, 0:48, 0:48]
    hu = np.full(z.shape, -1000.0, np.float32)
    body = ((y - 24) / 20) ** 2 + ((x - 24) / 22) ** 2 <= 1
    hu[body] = 40.0
    for cx in (14, 34):
        hu[((y - 24) / 12) ** 2 + ((x - cx) / 7) ** 2 <= 1] = -850.0
    return hu + rng.normal(0, 5, hu.shape).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_lung_model(tmp_path_factory) -> Path:
    """A trained tiny lung-region model's folder (``tests.tiny_lungs``)."""
    from tests.tiny_lungs import train_tiny_lung_model

    return train_tiny_lung_model(tmp_path_factory.mktemp("tiny-lungs"))


@pytest.fixture(scope="session")
def trained_pairs(tmp_path_factory, tiny_lung_model):
    """A whole pair comparison on a small synthetic multi-site dataset (tiny models, one held-out site),
    the lungs found by the tiny lung-region model, as the retrain pipeline finds them."""
    from ctscreen.imaging.synth import generate_dataset
    from ctscreen.training.config import load_config
    from ctscreen.training.pairs import run_pairs

    root = tmp_path_factory.mktemp("pairs")
    manifest = generate_dataset(root / "data", cases=18, sites=3, seed=5, profile="tiny", progress=False)
    config = load_config(None, [f"lung_model={tiny_lung_model}",
        "segmentation.profile=tiny", "classification.profile=tiny",
        "segmentation.models=[unet,fcn8s]", "classification.models=[resnet50,inception_v3]",
        "segmentation.optimiser.epochs=2", "segmentation.optimiser.lr=0.001", "segmentation.samples_per_case=2",
        "classification.optimiser.epochs=2", "classification.optimiser.lr=0.001", "evaluation.bootstrap_resamples=200",
    ])
    held_out = sorted({line.split(",")[2] for line in manifest.read_text().splitlines()[1:]})[0]
    summary = run_pairs(manifest, root / "run", config, held_out_site=held_out, progress=False)
    return {"root": root, "manifest": manifest, "summary": summary, "config": config, "held_out": held_out}


@pytest.fixture(scope="session")
def untrained_bundle(tmp_path_factory) -> Path:
    """A bundle of freshly initialised tiny networks: for what does not depend on learned weights."""
    import torch

    from ctscreen.imaging.preprocess import PreprocessingParameters
    from ctscreen.inference.bundle import save_bundle
    from ctscreen.models import build_model
    from ctscreen.models.classification import INPUT_ZYX
    from ctscreen.models.segmentation import PATCH_ZYX

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("untrained") / "bundle"
    save_bundle(root, build_model("fcn8s", "tiny"), {"name": "fcn8s", "profile": "tiny", "patch_zyx": list(PATCH_ZYX["tiny"])},
                build_model("resnet50", "tiny"), {"name": "resnet50", "profile": "tiny", "input_zyx": list(INPUT_ZYX["tiny"])},
                PreprocessingParameters(), threshold=0.5, metrics={"test": {"auc": 0.5}})
    return root


@pytest.fixture
def s3_server(monkeypatch):
    """An S3-compatible server (moto's) on loopback, the credentials for it in the environment, and a
    client of it: ``("host:port", client)``."""
    import boto3
    from moto.server import ThreadedMotoServer

    served = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    served.start()
    host, port = served.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "ctscreen", "AWS_SECRET_ACCESS_KEY": "ctscreen-secret", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    yield f"{host}:{port}", boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    served.stop()

