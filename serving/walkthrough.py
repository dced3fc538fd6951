"""The release path in miniature, for ``make demo``: the registry's champion built into a Triton
repository, released into a TUF store and published on ``stable``; a hospital node with its own
Triton whose agent takes it; one study screened through that Triton over HTTP and gRPC, next to the
same release in process."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from ctscreen.home import bundle_signing_key, tracking_uri
from ctscreen.inference.screen import screen_study
from serving.edge.agent import EdgeAgent
from serving.edge.config import load_edge_config
from serving.release.publishing import add_to_store, keygen
from serving.release.registered import registered_bundle
from serving.release.store import ReleaseStore
from serving.triton import server
from serving.triton.client import TritonPair
from serving.triton.repository import build_release


def release_to_a_node(out: Path, study: Path) -> dict:
    """Runs in the platform home that holds the registry (``$CTSCREEN_HOME``); writes under ``out``."""
    logging.getLogger("ctscreen.edge.agent").setLevel(logging.WARNING)
    central, node = out / "central", out / "node"
    keys = central / "release-keys"
    keygen(keys, bundle_signing_key())
    store = ReleaseStore.create(central / "store", keys)
    bundle, facts = registered_bundle("ctscreen-screening@champion", tracking_uri(), central / "champion")
    built = build_release(bundle, central / "triton-repository", bundle_signing_key().with_suffix(".pub"), facts)
    add_to_store(built, store)
    store.publish("stable", built.version)

    (node / "state" / "repository").mkdir(parents=True)
    shutil.copyfile(store.root_path, node / "root.json")
    shutil.copyfile(bundle_signing_key().with_suffix(".pub"), node / "bundle-signing.pub")
    triton = server.start(node / "state" / "repository", node / "triton", progress=lambda line: None)
    try:
        (node / "edge.yaml").write_text(yaml.safe_dump({
            "channel_url": str(store.store_dir), "trusted_root": "root.json", "bundle_public_key": "bundle-signing.pub",
            "state_dir": "state", "triton_url": triton.http_url, "metrics_address": "127.0.0.1:0"}))
        with EdgeAgent(load_edge_config(node / "edge.yaml")) as agent:
            agent.poll_once()
            serving = agent.state.serving
        screened = {name: screen_study(study, bundle, node / "screening" / name, predictor=pair)
                    for name, pair in (("triton_http", TritonPair(triton.http_url, "http", serving)),
                                       ("triton_grpc", TritonPair(triton.grpc_url, "grpc", serving)))}
    finally:
        server.stop(node / "triton")
    screened["onnx_in_process"] = screen_study(study, bundle, node / "screening" / "onnx_in_process", backend="onnx")
    probabilities = {name: result["covid_probability"] for name, result in screened.items()}
    return {"release": built.version, "mlflow_version": facts["mlflow_version"], "pair": facts["pair"], "serving": serving,
            "covid_probability": probabilities, "identical": len(set(probabilities.values())) == 1,
            "seconds": {name: result["timings_s"]["infer"] for name, result in screened.items()},
            "overlay_png": screened["triton_grpc"]["overlay_png"], "store": str(store.store_dir), "node": str(node)}
