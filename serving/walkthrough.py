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


def release_to_a_node(out: Path, study: Path, study_with_phi: Path | None = None) -> dict:
    """Runs in the platform home that holds the registry (``$CTSCREEN_HOME``); writes under ``out``.
    ``study_with_phi``: a study as the hospital's scanner sent it, for ``a_study_at_the_hospital``."""
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
                    for name, pair in (("triton_http", TritonPair(triton.http_url, "http", serving, bundle=bundle)),
                                       ("triton_grpc", TritonPair(triton.grpc_url, "grpc", serving, bundle=bundle)))}
        hospital = a_study_at_the_hospital(out / "hospital", node / "state", triton.http_url, study_with_phi) if study_with_phi else None
    finally:
        server.stop(node / "triton")
    screened["onnx_in_process"] = screen_study(study, bundle, node / "screening" / "onnx_in_process", backend="onnx")
    probabilities = {name: result["covid_probability"] for name, result in screened.items()}
    return {"release": built.version, "mlflow_version": facts["mlflow_version"], "pair": facts["pair"], "serving": serving,
            "covid_probability": probabilities, "identical": len(set(probabilities.values())) == 1,
            "seconds": {name: result["timings_s"]["infer"] for name, result in screened.items()},
            "overlay_png": screened["triton_grpc"]["overlay_png"], "store": str(store.store_dir), "node": str(node),
            "hospital": hospital}


FINISHED = ("screened", "not_screenable", "failed")


def a_study_at_the_hospital(site: Path, agent_state_dir: Path, triton_url: str, study: Path) -> dict:
    """A study with its PHI sent by DCMTK's storescu to the hospital's PACS (Orthanc), which forwards
    it to the site's screening service: screened through the node's Triton, SEG and SR back in the
    PACS and checked by dciodvfy, confirmed by a physician, and its de-identified case at central."""
    import secrets
    import subprocess
    import time

    import pydicom

    from ctscreen.dataset.intake import check_intake
    from serving import daemons
    from serving.edge.service.auth import set_password
    from serving.edge.service.config import load_service_config
    from serving.edge.service.service import EdgeService
    from serving.pacs import orthanc
    from serving.results.validation import dciodvfy_problems

    logging.getLogger("ctscreen.edge.service").setLevel(logging.WARNING)
    receiver_port = daemons.free_port()
    pacs = orthanc.start(site / "pacs", aet="PACS", stable_age_s=1, modalities={"EDGE": ["CTSCREEN", "127.0.0.1", receiver_port]})
    try:
        (site / "deid.key").write_text(secrets.token_hex(32))
        (site / "pacs.password").write_text(pacs.password)
        (site / "intake").mkdir()
        set_password(site / "users.yaml", "physician", secrets.token_urlsafe(16))
        (site / "site.yaml").write_text(yaml.safe_dump({
            "site": "demo-hospital", "state_dir": "state", "agent_state_dir": str(agent_state_dir), "triton_url": triton_url,
            "quiet_period_s": 1, "receiver": {"ae_title": "CTSCREEN", "port": receiver_port, "allowed_callers": ["PACS"]},
            "results_to": {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": pacs.aet},
            "pacs": {"url": pacs.dicomweb_url, "username": pacs.user, "password_file": "pacs.password"},
            "web": {"address": "127.0.0.1:0", "users_file": "users.yaml"},
            "central": {"intake": str(site / "intake"), "deidentification_key_file": "deid.key"}}))
        with EdgeService(load_service_config(site / "site.yaml"), tick_s=0.1) as service:
            subprocess.run(["storescu", "-aet", "CT1", "-aec", "PACS", "127.0.0.1", str(pacs.dicom_port), *map(str, sorted(study.iterdir()))],
                           check=True, capture_output=True, timeout=300)
            with pacs.client() as client:
                uid = str(pydicom.dcmread(next(study.iterdir()), stop_before_pixels=True).StudyInstanceUID)
                orthanc_id = client.post("/tools/lookup", content=uid).json()[0]["ID"]
                client.post("/modalities/EDGE/store", json={"Resources": [orthanc_id], "Synchronous": True}).raise_for_status()
                deadline = time.monotonic() + 600
                while (done := next((s for s in service.store.studies() if s.study_uid == uid and s.status in FINISHED), None)) is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the hospital's service did not screen the study within 10 minutes")
                    time.sleep(0.2)
                problems = {}
                for series in client.get(f"/studies/{orthanc_id}").json()["Series"]:
                    found = client.get(f"/series/{series}").json()
                    modality = found["MainDicomTags"]["Modality"]
                    if modality in ("SEG", "SR"):
                        (site / f"{modality}.dcm").write_bytes(client.get(f"/instances/{found['Instances'][0]}/file").content)
                        problems[modality] = dciodvfy_problems(site / f"{modality}.dcm")
            if done.status == "screened":
                service.record_verdict(done.id, "confirmed", "covid" if done.positive else "healthy", False, None, "physician")
                deadline = time.monotonic() + 120
                while not list((site / "intake").glob("*/manifest.csv")) and time.monotonic() < deadline:
                    time.sleep(0.2)
        accepted = check_intake(site / "intake").accepted
    finally:
        orthanc.stop(site / "pacs")
    return {"status": done.status, "reason": done.reason, "served_by": done.served_by, "model_version": done.model_version,
            "covid_probability": done.probability, "results_in_pacs": sorted(problems),
            "dciodvfy_errors": {m: len(p) for m, p in problems.items()}, "timings_s": done.json_field("timings"),
            "central_cases_accepted": len(accepted), "site": str(site)}
