"""The site's screening service end to end, on this CPU: a 512 x 512 x 300 synthetic chest CT sent by
DCMTK's ``storescu`` to the service's DICOM receiver, and the time from its last instance arriving
to its SEG and SR stored in the PACS (a real Orthanc, polled over REST), per stage (the service's
own ``Study.timings``), through the node's Triton against ONNX Runtime in the service's process
(``triton_url`` None) — both services running side by side, their studies interleaved. Then studies
per hour with several studies arriving at once: small studies pushed by concurrent ``storescu``
processes, none of them lost.

The release is the paper's winning pair (3D U-Net++ -> ResNet-50) in the small profile, freshly
initialised (latency does not depend on what the weights learned), at the paper's 1 x 1 x 2.5 mm
preprocessing, signed and built with ``build_release`` as central builds it; the node's Triton is
started over that repository and told to serve version 1 as the edge agent does.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

import torch
import yaml
from common import write_result
from pydicom.uid import generate_uid

from ctscreen.home import home, home_at
from ctscreen.imaging.dicom_writer import SeriesDescription, write_ct_series
from ctscreen.imaging.preprocess import PreprocessingParameters
from ctscreen.imaging.synth import case_grid, choose_sites, clinical_grid, make_case, render_case
from ctscreen.imaging.synth.phi import PRIVATE_CREATOR, PRIVATE_GROUP
from ctscreen.inference.bundle import load_bundle, save_bundle
from ctscreen.inference.signature import generate_signing_key, public_key_of, sign_bundle
from ctscreen.models import build_model
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.models.segmentation import PATCH_ZYX

PAIR, PROFILE = ("unetpp", "resnet50"), "small"
SLICES = 300  # the latency study: 512 x 512 x SLICES
REPEATS = 2  # latency studies per mode, interleaved (triton, in-process, in-process, triton)
CONCURRENT = 4  # small studies arriving at once, one storescu each
BURST_PROFILE = "small"  # 128 x 128 x at most 64 slices
QUIET_PERIOD_S = 1.0  # a study is complete once no instance came for this long
TICK_S = 0.2  # the service's scheduling tick
TIMEOUT_S = 600.0
SITE = "bench-site"
TOP_STAGES = ("load", "preprocess", "infer", "postprocess", "dicom_results", "store_results")
# the paper's figures, for comparison (a GPU workstation; 16 hospitals in production)
PAPER = {"seconds_per_case_gpu_workstation": 0.8, "screenings_per_day": 1300, "hospitals": 16,
         "screenings_per_hour_per_hospital": round(1300 / 16 / 24, 2)}

_START = time.perf_counter()


def _say(message: str) -> None:
    print(f"   [{time.perf_counter() - _START:6.1f} s] {message}", flush=True)


# the release ---------------------------------------------------------------------------------
def _bundle(root: Path, key: Path):
    torch.manual_seed(0)
    save_bundle(root, build_model(PAIR[0], PROFILE), {"name": PAIR[0], "profile": PROFILE, "patch_zyx": list(PATCH_ZYX[PROFILE])},
                build_model(PAIR[1], PROFILE), {"name": PAIR[1], "profile": PROFILE, "input_zyx": list(INPUT_ZYX[PROFILE])},
                PreprocessingParameters(), threshold=0.5, metrics={})
    sign_bundle(root, key)
    return load_bundle(root)


# the studies ---------------------------------------------------------------------------------
def _write_study(spec, grid, hu, folder: Path, copy: str) -> str:
    """The rendered case as its scanner writes it (fake PHI and all), under UIDs of its own for
    ``copy``: each send is a new study to the service. Its StudyInstanceUID."""
    scan = spec.scan
    uids = [generate_uid(entropy_srcs=[spec.case_id, "bench-edge", copy, part]) for part in ("study", "series", "frame")]
    description = SeriesDescription(
        study_instance_uid=uids[0], series_instance_uid=uids[1], frame_of_reference_uid=uids[2],
        manufacturer=scan.scanner.manufacturer, model=scan.scanner.model, kernel=scan.kernel,
        slice_thickness=scan.thickness_mm, series_number=2, acquired=spec.acquired,
        attributes={**spec.phi.attributes, "SeriesDescription": f"Chest {scan.thickness_mm:g}mm {scan.kernel}", "BodyPartExamined": "CHEST"},
        private=tuple((PRIVATE_GROUP, PRIVATE_CREATOR, element, vr, value) for element, vr, value in spec.phi.private),
    )
    write_ct_series(hu, grid.spacing_zyx, folder, description, origin=grid.origin_xyz)
    return uids[0]


def _studies(root: Path) -> dict:
    sites = choose_sites(0, 1)
    spec = make_case(seed=0, index=2, sites=sites)
    grid = clinical_grid(spec, SLICES)
    _say(f"rendering the {' x '.join(map(str, grid.shape_zyx[::-1]))} study")
    hu = render_case(spec, grid).hu
    studies = {"shape_xyz": list(grid.shape_zyx[::-1]), "spacing_zyx_mm": [round(s, 4) for s in grid.spacing_zyx], "latency": [], "burst": {}}
    for run in range(REPEATS * 2):
        folder = root / f"latency-{run}"
        _say(f"writing latency study {run + 1}/{REPEATS * 2} as DICOM ({grid.shape_zyx[0]} files)")
        studies["latency"].append((folder, _write_study(spec, grid, hu, folder, f"latency-{run}")))
    del hu
    burst = [make_case(seed=0, index=10 + i, sites=sites) for i in range(CONCURRENT)]
    warm = make_case(seed=0, index=20, sites=sites)
    _say(f"rendering {CONCURRENT} {BURST_PROFILE}-profile studies for the burst, and a tiny one to warm each service")
    for mode in MODES:
        studies["burst"][mode] = []
    for i, case in enumerate(burst):
        grid = case_grid(case, BURST_PROFILE)
        hu = render_case(case, grid).hu
        studies["burst_shape_xyz"] = list(grid.shape_zyx[::-1])
        for mode in MODES:
            folder = root / f"burst-{mode}-{i}"
            studies["burst"][mode].append((folder, _write_study(case, grid, hu, folder, f"burst-{mode}-{i}")))
    grid = case_grid(warm, "tiny")
    hu = render_case(warm, grid).hu
    studies["warm"] = {mode: (root / f"warm-{mode}", _write_study(warm, grid, hu, root / f"warm-{mode}", f"warm-{mode}")) for mode in MODES}
    return studies


# the service ---------------------------------------------------------------------------------
MODES = ("triton", "in_process")


def _service(root: Path, agent_state: Path, pacs, triton_url: str | None):
    """A service configured as a site configures it (its YAML), results by C-STORE to the PACS."""
    from serving.edge.service.auth import new_token
    from serving.edge.service.config import load_service_config
    from serving.edge.service.service import EdgeService

    root.mkdir(parents=True, exist_ok=True)
    new_token(root / "tokens.yaml", "prometheus")
    (root / "pacs.password").write_text(pacs.password)
    settings = {
        "site": SITE, "state_dir": "state", "agent_state_dir": str(agent_state), "quiet_period_s": QUIET_PERIOD_S,
        "triton_url": triton_url, "receiver": {"ae_title": "CTSCREEN", "port": 0, "allowed_callers": ["STORESCU"]},
        "web": {"address": "127.0.0.1:0", "tokens_file": "tokens.yaml"},
        "results_to": {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": pacs.aet},
        "pacs": {"url": pacs.dicomweb_url, "username": pacs.user, "password_file": "pacs.password"},
    }
    (root / "service.yaml").write_text(yaml.safe_dump(settings))
    return EdgeService(load_service_config(root / "service.yaml"), tick_s=TICK_S)


def _storescu(port: int, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(["storescu", "-aet", "STORESCU", "-aec", "CTSCREEN", "127.0.0.1", str(port), *map(str, sorted(folder.iterdir()))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _sent(process: subprocess.Popen, folder: Path) -> None:
    output, _ = process.communicate(timeout=TIMEOUT_S)
    if process.returncode != 0:
        raise RuntimeError(f"storescu of {folder} failed ({process.returncode}): {output[-2000:]}")


def _modalities(client, uid: str) -> set[str]:
    found = client.post("/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": uid}})
    found.raise_for_status()
    modalities = set()
    for study in found.json():
        series = client.get(f"/studies/{study}/series")
        series.raise_for_status()
        modalities |= {s["MainDicomTags"].get("Modality") for s in series.json()}
    return modalities


def _wait_for_results(service, pacs, uids: list[str]) -> dict[str, float]:
    """Epoch seconds at which each study's SEG and SR were both found in the PACS; a study the service
    gives up on (failed, not screenable) or that never comes is left out."""
    from serving.edge.service.store import Status

    done: dict[str, float] = {}
    given_up: set[str] = set()
    deadline = time.monotonic() + TIMEOUT_S
    with pacs.client() as client:
        while len(done) + len(given_up) < len(uids) and time.monotonic() < deadline:
            for uid in uids:
                if uid not in done and uid not in given_up and {"SEG", "SR"} <= _modalities(client, uid):
                    done[uid] = time.time()
            statuses = {s.study_uid: s for s in service.store.studies() if s.study_uid in uids}
            for uid, study in statuses.items():
                if study.status in (Status.failed.value, Status.not_screenable.value) and uid not in done:
                    _say(f"study {uid} {study.status}: {study.reason}")
                    given_up.add(uid)
            time.sleep(0.1)
    return done


def _study(service, uid: str):
    for study in service.store.studies():
        if study.study_uid == uid:
            return study
    return None


def _screened(service, uid: str, timeout: float = 60.0):
    """The study's row once the service finished with it (results stored come a moment before)."""
    from serving.edge.service.store import Status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = _study(service, uid)
        if study is not None and study.status not in (Status.receiving.value, Status.queued.value, Status.screening.value):
            return study
        time.sleep(0.1)
    raise TimeoutError(f"study {uid} not finished by the service")


def _metric_sum(service) -> float:
    return service.metrics.registry.get_sample_value("ctscreen_edge_arrival_to_results_seconds_sum", {"site": SITE}) or 0.0


def _epoch(naive_utc) -> float:
    return naive_utc.replace(tzinfo=timezone.utc).timestamp()


def _one_study(service, pacs, folder: Path, uid: str) -> dict:
    """Send one study, wait for its results in the PACS; what each part took."""
    before = _metric_sum(service)
    sent_at = time.time()
    _sent(_storescu(service.receiver.port, folder), folder)
    storescu_done = time.time()
    results_at = _wait_for_results(service, pacs, [uid]).get(uid)
    study = _screened(service, uid)
    if results_at is None or study.status != "screened":
        raise RuntimeError(f"study {uid} not screened: {study.status}: {study.reason}")
    timings = study.json_field("timings")
    last_arrival = _epoch(study.last_arrival)
    total = results_at - last_arrival
    stages = {k: timings[k] for k in TOP_STAGES if k in timings}
    return {
        "served_by": study.served_by,
        "send_s": round(storescu_done - sent_at, 3),  # first instance sent to storescu done
        "last_arrival_to_results_s": round(total, 3),  # the service's record of the last arrival -> SEG and SR found in Orthanc
        "storescu_done_to_results_s": round(results_at - storescu_done, 3),
        "service_metric_arrival_to_results_s": round(_metric_sum(service) - before, 3),  # what ctscreen_edge_arrival_to_results_seconds observed
        "quiet_period_s": QUIET_PERIOD_S,
        "stages_s": stages,
        "infer_parts_s": {k: v for k, v in timings.items() if k not in TOP_STAGES},
        # the scheduling tick, models() and the result rows, and the poll's own granularity (0.1 s)
        "other_s": round(total - QUIET_PERIOD_S - sum(stages.values()), 3),
    }


def _median(runs: list[dict]) -> dict:
    def med(values):
        return round(statistics.median(values), 3)

    return {
        "last_arrival_to_results_s": med([r["last_arrival_to_results_s"] for r in runs]),
        "send_s": med([r["send_s"] for r in runs]),
        "quiet_period_s": QUIET_PERIOD_S,
        "stages_s": {k: med([r["stages_s"][k] for r in runs]) for k in runs[0]["stages_s"]},
        "infer_parts_s": {k: med([r["infer_parts_s"][k] for r in runs if k in r["infer_parts_s"]]) for k in runs[0]["infer_parts_s"]},
        "other_s": med([r["other_s"] for r in runs]),
    }


def _burst(service, pacs, studies: list[tuple[Path, str]]) -> dict:
    """``CONCURRENT`` studies pushed at once by as many storescu processes."""
    from serving.edge.service.store import Status

    first_sent = time.time()
    processes = [(_storescu(service.receiver.port, folder), folder) for folder, _ in studies]
    for process, folder in processes:
        _sent(process, folder)
    all_sent = time.time()
    uids = [uid for _, uid in studies]
    done = _wait_for_results(service, pacs, uids)
    rows = {uid: _study(service, uid) for uid in uids}
    screened = [uid for uid in uids if uid in done and rows[uid] is not None and rows[uid].status == Status.screened.value]
    lost = len(uids) - len(screened)
    last = max(done.values()) if done else time.time()
    seconds = last - first_sent
    return {"studies": len(uids), "screened_with_seg_and_sr_in_pacs": len(screened), "lost": lost,
            "served_by": sorted({rows[uid].served_by for uid in screened}),
            "first_send_to_all_sent_s": round(all_sent - first_sent, 3),
            "first_send_to_last_results_s": round(seconds, 3),
            "studies_per_hour": round(len(screened) / seconds * 3600, 1) if screened else 0.0,
            "per_study_last_arrival_to_results_s": sorted(round(done[uid] - _epoch(rows[uid].last_arrival), 2) for uid in screened)}


# the servers ---------------------------------------------------------------------------------
def _tools_home(tmp_home: Path, progress) -> str | None:
    """The temporary home's tools: the real home's tritonserver (obtained there once, so its 55 MB
    wheel is not downloaded again each run), linked in. None, or why Triton cannot be had."""
    from serving.triton import server

    try:
        real = server.obtain(progress)  # under the real home: a no-op when it is there already
    except server.TritonUnavailable as error:
        return str(error)
    tools = tmp_home / "tools"
    tools.mkdir(parents=True, exist_ok=True)
    real_root = real.parents[1]  # <home>/tools/tritonserver-<version>
    (tools / real_root.name).symlink_to(real_root, target_is_directory=True)
    return None


def _start_triton(repository: Path, state: Path) -> tuple[object | None, str | None]:
    """The node's Triton over the agent's repository, serving release 1 as the agent makes it."""
    import tritonclient.http

    from serving.edge.triton_models import serve_versions, serves
    from serving.triton import server

    try:
        running = server.start(repository, state, progress=_say)
    except server.TritonUnavailable as error:
        return None, str(error)
    try:
        client = tritonclient.http.InferenceServerClient(running.http_url, network_timeout=TIMEOUT_S)
        serve_versions(client, repository, [1], sys.prefix)
        if not serves(client, repository, 1):
            raise RuntimeError(f"Triton does not serve release 1 after loading it: {running.index()}")
    except Exception as error:
        server.stop(state)
        return None, f"{type(error).__name__}: {error}"
    return running, None


def run(out_dir: Path) -> Path:
    from serving.pacs import orthanc

    started = time.perf_counter()
    missing = [what for what, there in (("DCMTK's storescu", shutil.which("storescu")), ("Orthanc", orthanc.BINARY.exists())) if not there]
    if missing:  # said in the JSON, and the other benchmarks go on
        _say(f"skipped: {' and '.join(missing)} not installed (make system)")
        return write_result(out_dir, "edge", {"skipped": f"{' and '.join(missing)} not installed (make system)"})
    try:
        return _run(out_dir, started)
    except orthanc.PacsUnavailable as error:
        _say(f"skipped: {error}")
        return write_result(out_dir, "edge", {"skipped": str(error)})


def _run(out_dir: Path, started: float) -> Path:
    from serving.edge.state import EdgeState
    from serving.pacs import orthanc
    from serving.triton import server
    from serving.triton.repository import build_release

    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        triton_problem = _tools_home(tmp / "home", _say)
        stack.enter_context(home_at(tmp / "home"))  # Orthanc's loopback shim compiles in here
        _say(f"CTSCREEN_HOME {home()}")

        key = generate_signing_key(tmp / "keys" / "bundle-signing.key")
        _say("building the release (small-profile U-Net++ -> ResNet-50, signed; ONNX export and parity check)")
        agent_state = tmp / "agent-state"
        build_release(_bundle(tmp / "bundle", key), agent_state / "repository", public_key_of(key), {"model": "ctscreen-screening"})
        EdgeState(serving=1).save(agent_state)
        studies = _studies(tmp / "studies")

        _say("starting Orthanc (the PACS) on loopback")
        pacs = orthanc.start(tmp / "orthanc", aet="PACS", stable_age_s=1)
        stack.callback(orthanc.stop, tmp / "orthanc")
        running = None
        if triton_problem is None:
            _say("starting the node's Triton and loading release 1 (3 models)")
            running, triton_problem = _start_triton(agent_state / "repository", tmp / "triton")
        if running is not None:
            stack.callback(server.stop, tmp / "triton")
        else:
            _say(f"no Triton: {triton_problem}; measuring in-process only")
        modes = [m for m in MODES if m != "triton" or running is not None]

        services = {}
        for mode in modes:
            services[mode] = _service(tmp / f"site-{mode}", agent_state, pacs, running.http_url if mode == "triton" else None).start()
            stack.callback(services[mode].stop)
        _say(f"services up: {', '.join(f'{m} receiver :{s.receiver.port}' for m, s in services.items())}")

        warm_up = {}
        for mode in modes:
            folder, uid = studies["warm"][mode]
            _say(f"{mode}: warming up with a tiny study (first screening loads the models)")
            warm_up[mode] = _one_study(services[mode], pacs, folder, uid)["last_arrival_to_results_s"]

        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        order = [m for r in range(REPEATS) for m in (modes if r % 2 == 0 else modes[::-1])]
        for number, (mode, (folder, uid)) in enumerate(zip(order, studies["latency"])):
            _say(f"latency {number + 1}/{len(order)} ({mode}): storescu {len(list(folder.iterdir()))} instances")
            result = _one_study(services[mode], pacs, folder, uid)
            runs[mode].append(result)
            _say(f"   last arrival -> SEG and SR in the PACS {result['last_arrival_to_results_s']:.2f} s "
                 f"(sent in {result['send_s']:.1f} s; served by {result['served_by']}; stages {result['stages_s']})")

        burst = {}
        for mode in modes:
            _say(f"burst ({mode}): {CONCURRENT} {BURST_PROFILE}-profile studies by {CONCURRENT} concurrent storescu")
            burst[mode] = _burst(services[mode], pacs, studies["burst"][mode])
            _say(f"   {burst[mode]['studies_per_hour']} studies/hour, {burst[mode]['lost']} lost, "
                 f"{burst[mode]['first_send_to_last_results_s']:.1f} s first send -> last results")

        latency = {mode: {"median": _median(runs[mode]), "runs": runs[mode]} for mode in modes}
        result = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or platform.machine()},
            "pair": {"segmentation": PAIR[0], "classification": PAIR[1], "profile": PROFILE, "preprocessing_spacing_zyx_mm": list(PreprocessingParameters().spacing_zyx)},
            "study": {"shape_xyz": studies["shape_xyz"], "spacing_zyx_mm": studies["spacing_zyx_mm"], "transfer_syntax": "Explicit VR Little Endian"},
            "service": {"quiet_period_s": QUIET_PERIOD_S, "tick_s": TICK_S, "results_to": "C-STORE to Orthanc", "sender": "DCMTK storescu"},
            "triton": {"available": running is not None, "problem": triton_problem},
            "warm_up_first_study_s": warm_up,
            "last_arrival_to_results": latency,
            "burst": {"concurrent_senders": CONCURRENT, "study_shape_xyz": studies["burst_shape_xyz"], **burst},
            "paper_anchors": PAPER,
        }
        if running is not None:
            t, p = latency["triton"]["median"], latency["in_process"]["median"]
            result["ratio_triton_over_in_process"] = {
                "last_arrival_to_results": round(t["last_arrival_to_results_s"] / p["last_arrival_to_results_s"], 3),
                "infer": round(t["stages_s"]["infer"] / p["stages_s"]["infer"], 3),
                "studies_per_hour": round(burst["triton"]["studies_per_hour"] / burst["in_process"]["studies_per_hour"], 3)
                if burst["in_process"]["studies_per_hour"] else None,
            }
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        _say(json.dumps({k: result[k] for k in ("warm_up_first_study_s", "ratio_triton_over_in_process") if k in result}))
    return write_result(out_dir, "edge", result)
