"""The edge agent against a real central store and its node's own Triton: the release story of a
hospital, from the first release to a rollback, with a client screening all the while."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from serving.edge.state import serving_version
from tests.serving.edge.conftest import derive_release, reference_case, serving_pair


def metrics(agent) -> str:
    with urllib.request.urlopen(f"http://{agent._http.address}/metrics", timeout=10) as answer:
        return answer.read().decode()


def probe(agent, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{agent._http.address}{path}", timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


PACE_S = 0.25  # between a client's screenings: steady traffic that leaves the node's CPU to the agent's loads


class ScreeningClient:
    """Screens the reference case in a loop, always asking for the release the node has in service."""

    def __init__(self, node):
        self.node, self.pair = node, serving_pair(node)
        self.image, self.lungs = reference_case(node, serving_version(node["config"].state_dir))
        self.answers: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stopping.is_set():
            version = serving_version(self.node["config"].state_dir)
            try:
                output = self.pair(self.image, self.lungs, version=version)
                assert np.isfinite(output.covid_probability)
                self.answers.append(version)
            except Exception as error:  # what a physician would see as a failed screening
                self.errors.append(f"version {version}: {error}")
            self.stopping.wait(PACE_S)

    def wait_for(self, answers: int, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) < answers:
            assert time.monotonic() < deadline and self.thread.is_alive(), f"screening stalled: {self.errors[-3:]}"
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=120)


def poll_while_screening(agent, node) -> ScreeningClient:
    """One poll of the agent while a client screens before, during and after it."""
    with ScreeningClient(node) as client:
        client.wait_for(2)
        agent.poll_once()
        client.wait_for(len(client.answers) + 2)
    return client


def test_the_release_story_of_a_node(central, node, agent):
    """First release taken and served; a second taken while a client screens, with no failed request;
    a broken third refused while the second keeps serving; a channel rollback back to the first."""
    assert probe(agent, "/readyz") == 503  # nothing verified in service yet
    central.store.publish("stable", 1)
    agent.poll_once()
    assert agent.state.serving == 1 and probe(agent, "/readyz") == 200 and probe(agent, "/healthz") == 200

    central.store.publish("stable", 2)
    client = poll_while_screening(agent, node)
    assert agent.state.serving == 2 and agent.state.previous == 1
    assert client.errors == [] and set(client.answers) == {1, 2}  # screened throughout, on both sides of the switch

    def wrong_reference(entry, folder):
        data = dict(np.load(entry / "reference.npz"))
        data["0/covid_probability"] = np.float32(float(data["0/covid_probability"]) + 0.25)
        np.savez_compressed(entry / "reference.npz", **data)

    central.store.publish("stable", derive_release(central, 3, wrong_reference))
    agent.poll_once()
    assert agent.state.serving == 2 and "smoke-test" in agent.state.refused["3"]
    exposed = metrics(agent)
    assert "ctscreen_edge_serving_version 2.0" in exposed and 'ctscreen_edge_smoke_tests_total{result="fail"} 1.0' in exposed
    assert 'ctscreen_edge_update_failures_total{kind="smoke-test"} 1.0' in exposed
    assert list((node["config"].state_dir / "refused").glob("3-*/reason.txt"))  # kept for inspection

    central.store.rollback("stable")  # 3 -> 2: nothing to do
    central.store.rollback("stable")  # 2 -> 1: the previous release, still loaded
    agent.poll_once()
    assert (agent.state.serving, agent.state.previous) == (1, 2)
    image, lungs = reference_case(node, 1)
    assert serving_pair(node)(image, lungs, version=1).covid_probability == pytest.approx(
        float(np.load(node["config"].repository / "ctscreen-screening" / "1" / "reference.npz")["0/covid_probability"]), abs=1e-4)


def test_edge_status_and_an_on_site_rollback_through_the_running_agent(central, node, agent):
    for version in (1, 2):  # whatever the node served before (the story's end, or nothing alone): 2, with 1 before it
        central.store.publish("stable", version)
        agent.poll_once()
    before = (agent.state.serving, agent.state.previous)
    assert before == (2, 1)

    def ctscreen(*args):
        return subprocess.run([sys.executable, "-m", "ctscreen.cli", "edge", *args, "--config", str(node["config_path"]), "--json"],
                              capture_output=True, text=True, timeout=300)

    status = json.loads(ctscreen("status").stdout)
    assert status["serving"] == before[0] and status["agent"]["http"] == agent._http.address
    rolled = ctscreen("rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert (agent.state.serving, agent.state.previous, agent.state.held_back) == (before[1], before[0], before[0])
    agent.poll_once()  # the channel still names what was rolled back from: held back
    assert agent.state.serving == before[1]


def test_the_agent_runs_without_torch_training_or_mlflow():
    """An edge node's agent carries the release and serving code only."""
    probe = ("import sys, serving.edge.agent; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai', 'mlflow', 'kfp', 'dvc'}), "
             "sorted(m for m in sys.modules if m.startswith(('ctscreen.training', 'ctscreen.evaluation', 'ctscreen.registry'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[] []"
