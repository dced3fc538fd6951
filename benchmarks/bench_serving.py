"""Serving through Triton against ONNX Runtime in this process, on the same bundle and the same
preprocessed case in the same run: latency and throughput at batch 1 with 1, 2 and 4 concurrent
clients, over HTTP and gRPC. Then the edge: the time from ``release publish`` to a node's agent
serving the new release (minus its poll interval), and the agent's resident memory.

The bundle is the paper's winning pair (3D U-Net++ -> ResNet-50) in the small profile, freshly
initialised (latency does not depend on what the weights learned), on the demo's 2 x 2 x 5 mm grid.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import tritonclient.http
import yaml
from common import write_result

from ctscreen.imaging.preprocess import PreprocessingParameters, preprocess
from ctscreen.imaging.synth import case_grid, choose_sites, make_case, render_case
from ctscreen.imaging.volume import CTVolume
from ctscreen.inference.bundle import load_bundle, save_bundle
from ctscreen.inference.screen import LocalPair
from ctscreen.inference.signature import generate_signing_key, public_key_of, sign_bundle
from ctscreen.models import build_model
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.models.segmentation import PATCH_ZYX
from serving.edge.state import EdgeState
from serving.release.publishing import add_to_store
from serving.release.store import ReleaseStore, generate_keys
from serving.triton import server
from serving.triton.client import TritonPair
from serving.triton.config import MODELS
from serving.triton.repository import build_release

PAIR, PROFILE = ("unetpp", "resnet50"), "small"
SPACING_ZYX = (5.0, 2.0, 2.0)
CLIENTS = (1, 2, 4)
REQUESTS_PER_CLIENT = 3
POLL_INTERVAL_S = 2.0


def _bundle(root: Path, key: Path, seed: int):
    torch.manual_seed(seed)
    save_bundle(root, build_model(PAIR[0], PROFILE), {"name": PAIR[0], "profile": PROFILE, "patch_zyx": list(PATCH_ZYX[PROFILE])},
                build_model(PAIR[1], PROFILE), {"name": PAIR[1], "profile": PROFILE, "input_zyx": list(INPUT_ZYX[PROFILE])},
                PreprocessingParameters(spacing_zyx=SPACING_ZYX), threshold=0.5, metrics={})
    sign_bundle(root, key)
    return load_bundle(root)


def _case():
    spec = make_case(seed=0, index=2, sites=choose_sites(0, 1))
    grid = case_grid(spec, "small")
    rendered = render_case(spec, grid)
    case = preprocess(CTVolume(rendered.hu, grid.spacing_zyx, grid.origin_xyz), PreprocessingParameters(spacing_zyx=SPACING_ZYX))
    return case.image, case.lung_mask


def _load(make_pair, image, lungs, clients: int) -> dict:
    """``clients`` threads, each with a pair of its own (made in its thread: tritonclient's HTTP client
    is bound to the thread that made it), each screening the case ``REQUESTS_PER_CLIENT`` times."""
    make_pair()(image, lungs)  # warm: first-request costs are not what a node sees all day
    latencies: list[float] = []

    def client():
        pair = make_pair()
        for _ in range(REQUESTS_PER_CLIENT):
            start = time.perf_counter()
            pair(image, lungs)
            latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "latency_median_s": round(statistics.median(latencies), 3),
            "latency_max_s": round(max(latencies), 3), "throughput_per_s": round(len(latencies) / wall, 3)}


def _latency_and_throughput(bundle, repository: Path, state: Path, image, lungs) -> dict:
    running = server.start(repository, state)
    try:
        client = tritonclient.http.InferenceServerClient(running.http_url)
        for model in MODELS:
            client.load_model(model)
        local = LocalPair(bundle, "onnx")
        modes = {"onnx_in_process": lambda: local,
                 "triton_http": lambda: TritonPair(running.http_url, "http", 1),
                 "triton_grpc": lambda: TritonPair(running.grpc_url, "grpc", 1)}
        results: dict[str, dict] = {mode: {} for mode in modes}
        for clients in CLIENTS:  # every mode at each concurrency before the next, so all see the same machine
            for mode, make in modes.items():
                results[mode][str(clients)] = _load(make, image, lungs, clients)
    finally:
        server.stop(state)
    ratios = {f"{mode}_over_onnx_in_process": {c: round(results[mode][c]["latency_median_s"] / results["onnx_in_process"][c]["latency_median_s"], 3)
                                               for c in results[mode]} for mode in ("triton_http", "triton_grpc")}
    return {"by_mode_and_clients": results, "latency_ratio": ratios}


def _rss_kb(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "peak_rss_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


def _wait(condition, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the edge agent did not put the release in service")
        time.sleep(0.05)


def _edge_update(bundles, public_key: Path, root: Path) -> dict:
    """A node's agent (its own process) following a channel: publish -> serving, the screenings a
    client made meanwhile and how many failed, and the agent's memory."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    store = ReleaseStore.create(root / "store", generate_keys(root / "release-keys"))
    for bundle in bundles:
        add_to_store(build_release(bundle, root / "central-repository", public_key), store)
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    http = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(store.store_dir)))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    node = root / "node"
    (node / "state" / "repository").mkdir(parents=True)
    running = server.start(node / "state" / "repository", node / "triton")
    config = node / "edge.yaml"
    config.write_text(yaml.safe_dump({
        "channel_url": f"http://127.0.0.1:{http.server_port}", "trusted_root": str(store.root_path), "bundle_public_key": str(public_key),
        "state_dir": str(node / "state"), "triton_url": running.http_url, "poll_interval_s": POLL_INTERVAL_S, "jitter": 0.0,
        "max_backoff_s": 30, "metrics_address": "127.0.0.1:0"}))
    store.publish("stable", 1)
    agent = subprocess.Popen([sys.executable, "-m", "ctscreen.cli", "edge", "agent", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    screened = {"ok": 0, "failed": 0}
    stopping = threading.Event()

    def client():  # a physician's screenings all through the update, always on the release in service
        pair = TritonPair(running.grpc_url, "grpc")
        reference = np.load(root / "central-repository" / "ctscreen-screening" / "1" / "reference.npz")
        while not stopping.is_set():
            try:
                pair(reference["0/image"], reference["0/lung_mask"], version=EdgeState.load(node / "state").serving)
                screened["ok"] += 1
            except Exception:  # what would be a failed screening
                screened["failed"] += 1

    screening = threading.Thread(target=client)
    try:
        _wait(lambda: EdgeState.load(node / "state").serving == 1)
        idle = _rss_kb(agent.pid)
        screening.start()
        published = time.perf_counter()
        store.publish("stable", 2)
        _wait(lambda: EdgeState.load(node / "state").serving == 2)
        seconds = time.perf_counter() - published
        memory = _rss_kb(agent.pid)
    finally:
        stopping.set()
        if screening.is_alive():
            screening.join()
        agent.terminate()
        agent.wait(timeout=60)
        server.stop(node / "triton")
        http.shutdown()
    return {"publish_to_serving_s": round(seconds, 2), "poll_interval_s": POLL_INTERVAL_S,
            "publish_to_serving_minus_poll_interval_s": round(seconds - POLL_INTERVAL_S, 2),
            "screenings_during_the_update": screened,
            "agent_memory": {"serving_first_release_rss_mb": idle["rss_mb"], **memory}}


def run(out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        key = generate_signing_key(tmp / "keys" / "bundle-signing.key")
        bundles = [_bundle(tmp / f"bundle-{seed}", key, seed) for seed in (1, 2)]
        image, lungs = _case()
        built = build_release(bundles[0], tmp / "repository", public_key_of(key))
        result = {
            "pair": {"segmentation": PAIR[0], "classification": PAIR[1], "profile": PROFILE, "spacing_zyx": list(SPACING_ZYX)},
            "case_zyx": list(image.shape), "batch": 1, "requests_per_client": REQUESTS_PER_CLIENT,
            "serving": _latency_and_throughput(bundles[0], built.repository, tmp / "triton", image, lungs),
            "edge_update": _edge_update(bundles, public_key_of(key), tmp / "edge"),
        }
        result["case_lung_voxels"] = int(np.count_nonzero(lungs))
    return write_result(out_dir, "serving", result)
