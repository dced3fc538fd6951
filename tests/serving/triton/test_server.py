"""A real tritonserver on loopback serving a release with its three networks (lung region, lesion
segmentation, classification): the same numbers as in-process ONNX Runtime, over HTTP and gRPC, and
a fallback that says so when no server answers."""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import tritonclient.http

from ctscreen.inference.screen import LocalPair, screen_study
from serving.triton import server
from serving.triton.client import FALLBACKS, TritonPair, serving_pair
from serving.triton.config import LUNG_REGION, MODELS, SCREENING
from serving.triton.repository import build_release


@pytest.fixture(scope="module")
def served(signed_bundles, public_key, tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    built = build_release(signed_bundles[1], root / "repository", public_key)
    assert built.facts["models"] == list(MODELS)
    running = server.start(built.repository, root / "state")
    client = tritonclient.http.InferenceServerClient(running.http_url)
    for model in MODELS:
        client.load_model(model)
    yield {"server": running, "release": built, "bundle": signed_bundles[1], "state": root / "state"}
    server.stop(root / "state")


def test_the_server_listens_on_loopback_only(served):
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout.splitlines()
    mine = [line for line in listening if f"pid={served['server'].pid}," in line]
    assert len(mine) >= 3 and all(_loopback(line.split()[3]) for line in mine), mine


def _loopback(address: str) -> bool:
    address = ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]"))
    return (address.ipv4_mapped or address).is_loopback if address.version == 6 else address.is_loopback


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_reproduces_in_process_onnx_runtime_exactly(served, protocol):
    """Same graphs, same ONNX Runtime settings, same sliding window: the same float32 numbers."""
    running = served["server"]
    pair = TritonPair(running.http_url if protocol == "http" else running.grpc_url, protocol, served["release"].version,
                      bundle=served["bundle"])
    reference = np.load(served["release"].repository / SCREENING / "1" / "reference.npz")
    for case in ("0", "1"):
        output = pair(reference[f"{case}/image"], reference[f"{case}/lung_mask"])
        np.testing.assert_array_equal(output.probability_map, reference[f"{case}/lesion_probability"])
        assert output.covid_probability == float(reference[f"{case}/covid_probability"])
        np.testing.assert_array_equal(pair.infer_network(LUNG_REGION, reference[f"{case}/lung_window"], 1), reference[f"{case}/lung_logits"])


def test_screening_a_real_study_through_triton_equals_ctscreen_screen_onnx(served, real_chest_ct, tmp_path):
    bundle = served["bundle"]
    """The lung region too: the lung-region network asked through Triton window by window gives the
    lung mask ONNX Runtime gives here, voxel for voxel, on real CT."""
    through_triton = screen_study(real_chest_ct, bundle, tmp_path / "triton",
                                  predictor=TritonPair(served["server"].grpc_url, "grpc", served["release"].version, bundle=bundle))
    in_process = screen_study(real_chest_ct, bundle, tmp_path / "onnx", backend="onnx")
    assert through_triton["covid_probability"] == in_process["covid_probability"]
    assert through_triton["model"]["backend"] == "triton" and through_triton["lung_region"] == in_process["lung_region"] == "network"
    for mask in ("lesion_mask", "lung_mask"):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(through_triton[mask])),
                                      sitk.GetArrayFromImage(sitk.ReadImage(in_process[mask])))


def test_without_a_server_screening_falls_back_in_process_and_says_so(served, caplog):
    before = FALLBACKS.labels(reason="unavailable")._value.get()
    with caplog.at_level(logging.WARNING):
        pair = serving_pair("127.0.0.1:9", served["release"].repository, served["release"].version)
    assert isinstance(pair, LocalPair) and pair.served_by["backend"] == "onnx-in-process"
    assert "screening in-process with ONNX Runtime" in caplog.text
    assert FALLBACKS.labels(reason="unavailable")._value.get() == before + 1
    reference = np.load(served["release"].repository / SCREENING / "1" / "reference.npz")
    np.testing.assert_array_equal(pair(reference["0/image"], reference["0/lung_mask"]).probability_map, reference["0/lesion_probability"])
    served_pair = serving_pair(served["server"].http_url, served["release"].repository, served["release"].version)
    assert isinstance(served_pair, TritonPair)


def test_triton_cli_up_status_down(served, tmp_path):
    def ctscreen(*args):
        return subprocess.run([sys.executable, "-m", "ctscreen.cli", "triton", *args, "--state", str(tmp_path / "state"), "--json"],
                              capture_output=True, text=True, timeout=300)

    up = ctscreen("up", "--repository", str(served["release"].repository), "--load", SCREENING)
    assert up.returncode == 0, up.stderr[-2000:]
    described = json.loads(up.stdout)
    assert described["ready"] and described["http"].startswith("127.0.0.1:") and described["grpc"].startswith("127.0.0.1:")
    status = ctscreen("status")
    assert status.returncode == 0
    states = {(m["name"], m.get("version")): m.get("state") for m in json.loads(status.stdout)["models"]}
    assert states[(SCREENING, "1")] == "READY"  # loaded with what it calls
    again = ctscreen("up", "--repository", str(served["release"].repository))
    assert again.returncode == 2 and "already runs" in again.stderr
    down = ctscreen("down")
    assert down.returncode == 0 and json.loads(down.stdout)["stopped"]
    assert ctscreen("status").returncode == 1


@pytest.mark.parametrize("url, backend", [("served", "triton"), ("127.0.0.1:9", "onnx-in-process")])
def test_screen_cli_through_triton_or_in_process_when_none_serves(served, real_chest_ct, tmp_path, url, backend):
    release = served["release"]
    screened = subprocess.run([sys.executable, "-m", "ctscreen.cli", "screen", str(real_chest_ct), "--backend", "triton",
                               "--triton-url", served["server"].grpc_url if url == "served" else url, "--protocol", "grpc",
                               "--repository", str(release.repository), "--release", str(release.version), "--out", str(tmp_path / "out"),
                               "--json"], capture_output=True, text=True, timeout=600)
    assert screened.returncode == 0, screened.stderr[-2000:]
    result = json.loads(screened.stdout)
    assert result["model"]["backend"] == backend and result["model"]["version"] == release.version
    assert ("screening in-process with ONNX Runtime" in screened.stderr) == (backend == "onnx-in-process")
    in_process = screen_study(real_chest_ct, served["bundle"], tmp_path / "onnx", backend="onnx")
    assert result["covid_probability"] == in_process["covid_probability"]
