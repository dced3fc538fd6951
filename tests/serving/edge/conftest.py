"""Central (a release store served over loopback HTTP, releases built from signed bundles) and one
hospital node (its own real Triton and an edge agent) for the edge tests."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

from serving.edge.agent import EdgeAgent
from serving.edge.config import load_edge_config
from serving.release.publishing import add_to_store
from serving.release.store import ReleaseStore, generate_keys
from serving.triton import server
from serving.triton.client import TritonPair
from serving.triton.config import MODELS, SCREENING
from serving.triton.location import FACTS, release_facts
from serving.triton.repository import build_release


class Central:
    """The release store on loopback HTTP; ``down()`` and ``up()`` on the same port; files whose
    path contains one of ``slow`` are served ``delay`` seconds late."""

    def __init__(self, store: ReleaseStore):
        self.store = store
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.slow: set[str] = set()
        self.delay = 0.0
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        central = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                if any(part in self.path for part in central.slow):
                    time.sleep(central.delay)
                super().do_GET()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), partial(Handler, directory=str(self.store.store_dir)))
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture(scope="package")
def central(signed_bundles, public_key, tmp_path_factory):
    """Releases 1 and 2 built from two signed bundles, in a store served on loopback."""
    root = tmp_path_factory.mktemp("central")
    store = ReleaseStore.create(root / "store", generate_keys(root / "keys"))
    repository = root / "repository"
    for bundle in signed_bundles:
        add_to_store(build_release(bundle, repository, public_key, {"model": "ctscreen-screening"}), store)
    hub = Central(store)
    hub.repository = repository
    hub.up()
    yield hub
    hub.down()


def derive_release(central: Central, version: int, change=None, source: int = 2) -> int:
    """Release ``version``: release ``source``'s files as that version, ``change(folder)`` applied
    before central signs them (so TUF vouches for whatever the change did)."""
    folder = central.repository.parent / f"derived-{version}"
    shutil.rmtree(folder, ignore_errors=True)
    for model in MODELS:
        shutil.copytree(central.repository / model / str(source), folder / model / str(version))
    facts = {**release_facts(central.repository, source), "version": version, "derived_from": source}
    (folder / SCREENING / str(version) / FACTS).write_text(json.dumps(facts))
    if change is not None:
        change(folder / SCREENING / str(version), folder)
    central.store.add_release(version, folder, facts)
    return version


def start_node(root: Path, channel_url: str, trusted_root: Path, public_key: Path) -> dict:
    """A hospital node: its own Triton over its own repository, and the edge agent's configuration."""
    state = root / "state"
    (state / "repository").mkdir(parents=True)
    shutil.copyfile(trusted_root, root / "root.json")
    shutil.copyfile(public_key, root / "bundle-signing.pub")
    running = server.start(state / "repository", root / "triton")
    config_path = root / "edge.yaml"
    config_path.write_text(yaml.safe_dump({
        "channel_url": channel_url, "channel": "stable", "trusted_root": "root.json", "bundle_public_key": "bundle-signing.pub",
        "state_dir": "state", "triton_url": running.http_url, "poll_interval_s": 0.5, "max_backoff_s": 4, "metrics_address": "127.0.0.1:0",
    }))
    return {"root": root, "config_path": config_path, "config": load_edge_config(config_path), "triton": running}


@pytest.fixture(scope="package")
def node(central, public_key, tmp_path_factory):
    root = tmp_path_factory.mktemp("node")
    yield start_node(root, central.url, central.store.root_path, public_key)
    server.stop(root / "triton")


@pytest.fixture
def agent(node):
    """The node's agent for one test (its state carries over from test to test, as on a real node)."""
    with EdgeAgent(node["config"]) as running:
        running.serve_http()
        yield running


def reference_case(node, version: int):
    data = np.load(node["config"].repository / SCREENING / str(version) / "reference.npz")
    return data["0/image"], data["0/lung_mask"]


def serving_pair(node) -> TritonPair:
    return TritonPair(node["triton"].grpc_url, "grpc")
