"""From the retrain pipeline to a hospital node, end to end: the bundles the pipeline registered
(signed at registration) are built into a Triton repository, released into a TUF store and
published on ``stable`` with the CLI; a node's agent with its own Triton takes the first, takes the
second while a client screens without an error, refuses a broken third and follows the channel's
rollback back to the first."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ctscreen.home import bundle_signing_key
from serving.edge.agent import EdgeAgent
from serving.release.store import ReleaseStore
from serving.triton import server
from serving.triton.config import CLASSIFICATION, SCREENING
from tests.serving.edge.conftest import Central, derive_release, serving_pair, start_node
from tests.serving.edge.test_agent import poll_while_screening


def ctscreen(*args) -> dict:
    done = subprocess.run([sys.executable, "-m", "ctscreen.cli", *args, "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture
def central(stages, tmp_path):
    root, uri, *_ = stages
    keys = tmp_path / "release-keys"
    ctscreen("release", "keygen", "--keys", str(keys))
    store_dir = tmp_path / "store"
    ctscreen("release", "init", "--store", str(store_dir), "--keys", str(keys), "--timestamp-expiry", "1h")
    hub = Central(ReleaseStore.open(store_dir, keys))
    hub.repository, hub.keys, hub.uri = tmp_path / "central-repository", keys, uri
    hub.up()
    yield hub
    hub.down()


def release(central, version: str) -> dict:
    return ctscreen("release", "build", "--model", f"ctscreen-screening@{version}", "--tracking-uri", central.uri,
                    "--repository", str(central.repository), "--store", str(central.store.store_dir), "--keys", str(central.keys))


def publish(central, version: int) -> None:
    ctscreen("release", "publish", "--channel", "stable", "--version", str(version), "--store", str(central.store.store_dir),
             "--keys", str(central.keys))


def test_registered_bundles_reach_a_node_and_come_back(stages, central, tmp_path):
    first = release(central, "1")
    assert (first["version"], first["mlflow_version"]) == (1, "1")
    publish(central, 1)
    node = start_node(tmp_path / "node", central.url, central.store.root_path, bundle_signing_key().with_suffix(".pub"))
    try:
        with EdgeAgent(node["config"]) as agent:
            agent.poll_once()
            assert agent.state.serving == 1

            assert release(central, "2")["version"] == 2
            publish(central, 2)
            client = poll_while_screening(agent, node)
            assert agent.state.serving == 2 and client.errors == [] and set(client.answers) == {1, 2}

            def swapped_network(entry, folder):
                """Central's tooling swaps the classifier, consistently: TUF vouches for it, the bundle signature cannot."""
                for path in (entry / "bundle" / "classification.onnx", folder / CLASSIFICATION / entry.name / "model.onnx"):
                    data = bytearray(path.read_bytes())
                    data[-100] ^= 0x01
                    path.write_bytes(bytes(data))

            publish(central, derive_release(central, 3, swapped_network))
            agent.poll_once()
            assert agent.state.serving == 2 and agent.state.refused["3"].startswith("signature:")

            listed = ctscreen("release", "list", "--store", str(central.store.store_dir))
            assert listed["channels"] == {"stable": 3} and [r["version"] for r in listed["releases"]] == [1, 2, 3]
            assert listed["releases"][0]["facts"]["mlflow_run_id"] and listed["releases"][0]["facts"]["dataset_version"]
            for _ in range(2):
                ctscreen("release", "rollback", "--channel", "stable", "--store", str(central.store.store_dir), "--keys", str(central.keys))
            agent.poll_once()
            assert agent.state.serving == 1
            reference = np.load(node["config"].repository / SCREENING / "1" / "reference.npz")
            output = serving_pair(node)(reference["0/image"], reference["0/lung_mask"], version=1)
            assert output.covid_probability == pytest.approx(float(reference["0/covid_probability"]), abs=1e-4)
    finally:
        server.stop(tmp_path / "node" / "triton")


def test_the_demo_walkthrough_serves_the_champion_from_a_node(stages, tmp_path):
    from ctscreen.manifest import read_manifest
    from serving.walkthrough import release_to_a_node

    from tests.serving.edge.service.conftest import synthetic_study

    root, *_ = stages
    study = read_manifest(root / "intake-1" / "manifest.csv")[0]["image"]
    shown = release_to_a_node(tmp_path / "edge", study, synthetic_study(tmp_path / "scanner"))
    assert shown["serving"] == shown["release"] == 1 and shown["identical"]
    assert set(shown["covid_probability"]) == {"triton_http", "triton_grpc", "onnx_in_process"}
    hospital = shown["hospital"]  # the same release screening a study with PHI between the PACS and the physicians
    assert (hospital["status"], hospital["served_by"], hospital["model_version"]) == ("screened", "triton", 1)
    assert hospital["results_in_pacs"] == ["SEG", "SR"] and hospital["dciodvfy_errors"] == {"SEG": 0, "SR": 0}
    assert hospital["central_cases_accepted"] == 1
    assert not server.read_state(tmp_path / "edge" / "node" / "triton")  # stopped
