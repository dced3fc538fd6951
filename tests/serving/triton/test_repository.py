"""Building a Triton model repository from signed bundles: versions, configurations, refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ctscreen.inference.bundle import load_bundle
from ctscreen.inference.signature import SignatureError, generate_signing_key, sign_bundle
from serving.triton.config import LUNG_REGION, MODELS, SCREENING, SEGMENTATION, release_configs, to_pbtxt
from serving.triton.location import release_facts, versions
from serving.triton.repository import BuildError, build_release


def test_releases_become_numbered_versions_and_the_policy_keeps_the_previous_one(signed_bundles, public_key, tmp_path):
    repository = tmp_path / "repository"
    first = build_release(signed_bundles[0], repository, public_key, {"mlflow_version": "3"})
    second = build_release(signed_bundles[1], repository, public_key)
    assert (first.version, second.version) == (1, 2) and first.created and second.created
    assert versions(repository) == [1, 2]
    for model in MODELS:
        served = [2] if model == LUNG_REGION else [1, 2]  # the first bundle finds the lungs by the classical extraction
        assert all((repository / model / str(v)).is_dir() for v in served)  # earlier versions stay
        config = (repository / model / "config.pbtxt").read_text()
        assert f"versions: [ {', '.join(map(str, served))} ]" in config and f'name: "{model}"' in config
    assert not (repository / LUNG_REGION / "1").exists()
    assert (repository / SEGMENTATION / "2" / "model.onnx").read_bytes() == (signed_bundles[1].root / "segmentation.onnx").read_bytes()
    assert (repository / LUNG_REGION / "2" / "model.onnx").read_bytes() == (signed_bundles[1].root / "lungs" / "lung_region.onnx").read_bytes()
    facts = release_facts(repository, 1)
    assert facts["mlflow_version"] == "3" and facts["threshold"] == 0.5 and facts["onnx_parity_max_abs"] <= 1e-3
    assert (facts["lung_region"], release_facts(repository, 2)["lung_region"]) == ("classical", "network")
    assert release_facts(repository, 2)["models"] == list(MODELS) and LUNG_REGION not in facts["models"]
    assert not list(repository.glob(".staging-*"))
    reference = np.load(repository / SCREENING / "1" / "reference.npz")
    assert {"0/image", "0/lung_mask", "0/lesion_probability", "0/covid_probability", "1/image"} <= set(reference.files)
    assert set(first.files()) >= {f"{SCREENING}/1/bundle/model.sig", f"{SEGMENTATION}/1/model.onnx", f"{SCREENING}/1/facts.json"}
    assert f"{LUNG_REGION}/2/model.onnx" in second.files() and f"{SCREENING}/2/bundle/lungs/lung_region.pt" in second.files()
    with_lungs = np.load(repository / SCREENING / "2" / "reference.npz")
    assert {"0/lung_window", "0/lung_logits"} <= set(with_lungs.files) and "0/lung_window" not in reference.files
    assert with_lungs["0/lung_window"].shape == (1, 1, *signed_bundles[1].lung_region().spec.window_zyx)


def test_the_same_bundle_is_not_released_twice(signed_bundles, public_key, tmp_path):
    first = build_release(signed_bundles[0], tmp_path, public_key)
    again = build_release(signed_bundles[0], tmp_path, public_key)
    assert (again.version, again.created) == (first.version, False)
    assert versions(tmp_path) == [1]


@pytest.mark.parametrize("tamper", ["flip a byte of a network", "add a file", "remove the signature", "sign with another key"])
def test_a_bundle_whose_signature_does_not_verify_is_refused(signed_bundles, public_key, fresh_copy, tmp_path, tamper):
    bundle = fresh_copy(signed_bundles[0])
    if tamper == "flip a byte of a network":
        data = bytearray((bundle.root / "classification.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bundle.root / "classification.onnx").write_bytes(bytes(data))
    elif tamper == "add a file":
        (bundle.root / "extra.py").write_text("print('hello')\n")
    elif tamper == "remove the signature":
        (bundle.root / "model.sig").unlink()
    else:
        sign_bundle(bundle.root, generate_signing_key(tmp_path / "intruder.key"))
    with pytest.raises(SignatureError):
        build_release(bundle, tmp_path / "repository", public_key)
    assert versions(tmp_path / "repository") == []


def test_an_onnx_graph_that_is_not_the_networks_is_refused(signed_bundles, signing_key, public_key, fresh_copy, tmp_path):
    """Correctly signed, yet its ONNX graph is another bundle's: the parity check at build time catches it."""
    bundle = fresh_copy(signed_bundles[0])
    shutil.copyfile(signed_bundles[1].root / "segmentation.onnx", bundle.root / "segmentation.onnx")
    sign_bundle(bundle.root, signing_key)
    with pytest.raises(BuildError, match="differs from the PyTorch weights"):
        build_release(load_bundle(bundle.root), tmp_path / "repository", public_key)


def test_a_lung_region_graph_that_is_not_its_network_is_refused(signed_bundles, signing_key, public_key, fresh_copy, tmp_path):
    """The third network is checked as the other two are."""
    bundle = fresh_copy(signed_bundles[1])
    shutil.copyfile(bundle.root / "segmentation.onnx", bundle.root / "lungs" / "lung_region.onnx")
    sign_bundle(bundle.root, signing_key)
    with pytest.raises(BuildError, match="lung_region.onnx: the ONNX graph differs"):
        build_release(load_bundle(bundle.root), tmp_path / "repository", public_key)
    assert versions(tmp_path / "repository") == []


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_configurations_per_target(target):
    configs = release_configs(target, "/opt/venv", [4, 5], lung_region=True)
    assert list(configs) == list(MODELS) and list(release_configs(target, None, [1])) == [m for m in MODELS if m != LUNG_REGION]
    assert configs[LUNG_REGION]["input"][0]["dims"] == [1, -1, -1, -1] and configs[LUNG_REGION]["output"][0]["dims"] == [2, -1, -1, -1]
    network = configs[SEGMENTATION]
    assert network["backend"] == ("python" if target == "cpu" else "onnxruntime")
    assert network["instance_group"][0]["kind"] == ("KIND_CPU" if target == "cpu" else "KIND_GPU")
    assert network["dynamic_batching"] and network["max_batch_size"] > 1
    assert configs[SCREENING]["backend"] == "python" and configs[SCREENING]["max_batch_size"] == 0
    text = to_pbtxt(configs[SCREENING])
    assert 'key: "EXECUTION_ENV_PATH"' in text and 'string_value: "/opt/venv"' in text and "data_type: TYPE_UINT8" in text
    json.dumps(configs)  # the same dicts travel as a load request's JSON configuration
    with pytest.raises(ValueError, match="unknown target"):
        release_configs("tpu", None, [1])


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The S3 server with a bucket for Triton repositories."""
    monkeypatch.setenv("CTSCREEN_HOME", str(tmp_path / "home"))
    endpoint, client = s3_server
    client.create_bucket(Bucket="models")
    return endpoint, client


def test_a_repository_on_s3_gets_numbered_versions_as_a_path_does(signed_bundles, public_key, s3):
    endpoint, client = s3
    url = f"s3://{endpoint}/models/triton"
    first = build_release(signed_bundles[0], url, public_key)
    second = build_release(signed_bundles[1], url, public_key)
    again = build_release(signed_bundles[0], url, public_key)
    assert (first.version, second.version, again.version, again.created) == (1, 2, 1, False)
    keys = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="models") for o in page.get("Contents", [])}
    for relpath in second.files():
        assert f"triton/{relpath}" in keys
    assert client.get_object(Bucket="models", Key=f"triton/{SEGMENTATION}/2/model.onnx")["Body"].read() == \
        (signed_bundles[1].root / "segmentation.onnx").read_bytes()
    config = client.get_object(Bucket="models", Key=f"triton/{SCREENING}/config.pbtxt")["Body"].read().decode()
    assert "versions: [ 1, 2 ]" in config
    assert second.location == url and (second.repository / SCREENING / "2" / "facts.json").is_file()  # the local mirror publishes
