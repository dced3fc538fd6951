"""Every way a release can go wrong reaching a node: in each, the node keeps serving its last good
release, the cause is in the log and the metrics, and nothing is lost."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import tritonclient.http
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

from serving.edge.agent import EdgeAgent, EdgeError
from serving.edge.state import EdgeState
from serving.release.store import generate_keys, load_signer
from serving.triton.config import SCREENING, SEGMENTATION
from tests.serving.edge.conftest import derive_release
from tests.serving.edge.test_agent import metrics


@pytest.fixture
def serving_before(central, agent):
    """The node serves a good release before each fault (the story's first, if it runs alone)."""
    if agent.state.serving is None:
        central.store.publish("stable", 1)
        agent.poll_once()
    assert agent.state.serving is not None
    return agent.state.serving


def served_file(central, target: str) -> Path:
    directory, _, name = target.rpartition("/")
    [path] = (central.store.store_dir / "targets" / directory).glob(f"*.{name}")
    return path


def next_version(central) -> int:
    return max(r["version"] for r in central.store.releases()) + 1


def truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fault, reason", [(truncate, "length or hash mismatch"), (flip_a_byte, "length or hash mismatch"),
                                           (Path.unlink, "missing from the store")])
def test_a_damaged_or_missing_file_in_the_store_is_refused(central, agent, serving_before, caplog, fault, reason):
    version = derive_release(central, next_version(central))
    fault(served_file(central, f"releases/{version}/{SEGMENTATION}/{version}/model.onnx"))
    central.store.publish("stable", version)
    with caplog.at_level(logging.ERROR):
        agent.poll_once()
    assert agent.state.serving == serving_before
    assert reason in agent.state.refused[str(version)] and reason in caplog.text
    assert 'ctscreen_edge_update_failures_total{kind="verification"}' in metrics(agent)
    assert not (agent.config.repository / SEGMENTATION / str(version)).exists()  # nothing of it installed


def test_metadata_signed_with_another_key_is_refused(central, agent, serving_before, tmp_path, caplog):
    central.store.publish("stable", derive_release(central, next_version(central)))
    timestamp = central.store.metadata_dir / "timestamp.json"
    genuine = timestamp.read_bytes()
    forged = Metadata.from_bytes(genuine)
    forged.sign(load_signer(generate_keys(tmp_path / "intruder"), "timestamp"))
    forged.to_file(str(timestamp), JSONSerializer(compact=False))
    try:
        with caplog.at_level(logging.ERROR):
            agent.poll_once()
    finally:
        timestamp.write_bytes(genuine)
    assert agent.state.serving == serving_before
    assert "bad signature" in agent.state.last_failure["reason"] and "bad signature" in caplog.text


def test_older_signed_metadata_served_again_is_a_rollback_attack(central, agent, serving_before):
    timestamp = central.store.metadata_dir / "timestamp.json"
    older = timestamp.read_bytes()
    central.store.refresh_timestamp()
    agent.poll_once()  # the node has seen the newer timestamp (and taken what the channel names)
    settled = agent.state.serving
    newer = timestamp.read_bytes()
    timestamp.write_bytes(older)
    try:
        agent.poll_once()
    finally:
        timestamp.write_bytes(newer)
    assert agent.state.serving == settled
    assert "rollback" in agent.state.last_failure["reason"]


def test_a_model_triton_refuses_to_load_is_unloaded_and_refused(central, agent, serving_before, node):
    def broken_network(entry, folder):
        version = entry.name
        (folder / SEGMENTATION / version / "model.py").write_text("raise RuntimeError('this network cannot start')\n")

    version = derive_release(central, next_version(central), broken_network)
    central.store.publish("stable", version)
    agent.poll_once()
    assert agent.state.serving == serving_before
    assert agent.state.refused[str(version)].startswith("load:")
    client = tritonclient.http.InferenceServerClient(node["triton"].http_url)
    assert client.is_model_ready(SCREENING, str(serving_before)) and not client.is_model_ready(SEGMENTATION, str(version))
    assert 'ctscreen_edge_update_failures_total{kind="load"} 1.0' in metrics(agent)


def test_central_down_for_a_while_backs_off_and_keeps_serving(central, agent, serving_before):
    central.down()
    try:
        waits = []
        for _ in range(3):
            agent.poll_once()
            waits.append(agent.next_wait())
    finally:
        central.up()
    assert agent.state.serving == serving_before
    assert waits[0] < waits[1] < waits[2] <= agent.config.max_backoff_s * (1 + agent.config.jitter)
    assert 'ctscreen_edge_polls_total{outcome="unreachable"} 3.0' in metrics(agent)
    agent.poll_once()
    assert agent.next_wait() <= agent.config.poll_interval_s * (1 + agent.config.jitter)  # back to the interval


def test_two_agents_on_one_node_are_refused(node, agent):
    with pytest.raises(EdgeError, match="another edge agent is running"):
        EdgeAgent(node["config"]).acquire()
    second = subprocess.run([sys.executable, "-m", "ctscreen.cli", "edge", "agent", "--config", str(node["config_path"]), "--polls", "1"],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "another edge agent is running" in second.stderr


def start_agent_process(node) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ctscreen.cli", "edge", "agent", "--config", str(node["config_path"]), "--polls", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.parametrize("moment", ["during the download", "during the switch"])
def test_an_agent_killed_mid_update_restarts_into_a_working_model(central, node, moment):
    config = node["config"]
    with EdgeAgent(config) as first:
        if first.state.serving is None:
            central.store.publish("stable", 1)
            first.poll_once()
        before = first.state.serving
    version = derive_release(central, next_version(central))
    central.store.publish("stable", version)
    client = tritonclient.http.InferenceServerClient(node["triton"].http_url)
    if moment == "during the download":
        central.slow, central.delay = {f"/{SEGMENTATION}/{version}/"}, 60.0
        process = start_agent_process(node)
        cache = config.state_dir / "tuf" / "cache"
        wait_for(lambda: any(unquote(p.name).startswith(f"releases/{version}/{SCREENING}/") for p in cache.iterdir()))
    else:
        process = start_agent_process(node)
        wait_for(lambda: client.is_model_ready(SEGMENTATION, str(version)))  # the candidate is being loaded
    kill(process)
    central.slow = set()
    assert EdgeState.load(config.state_dir).serving == before  # the switch had not been written
    with EdgeAgent(config) as restarted:
        restarted.recover()
        assert client.is_model_ready(SCREENING, str(before)) and not client.is_model_ready(SEGMENTATION, str(version))
        restarted.poll_once()
        assert restarted.state.serving == version and restarted.state.previous == before
