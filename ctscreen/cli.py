"""``ctscreen <verb>``: every job a user runs. Errors a user can act on print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ctscreen import __version__
from ctscreen.errors import CTScreenError, InputError
from ctscreen.home import bundle_signing_key, dataset_dir, dvc_remote, home, release_keys_dir, release_store, tracking_uri

EXIT_USAGE = 2


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=None, default=str))
        return
    for key, value in result.items():
        print(f"{key:>20}: {value}")


def cmd_info(args) -> int:
    from ctscreen.imaging.readers import load_volume

    volume = load_volume(args.path, allow_gaps=args.allow_gaps)
    _print_result(volume.info(), args.json)
    return 0


def cmd_lungs(args) -> int:
    from ctscreen.imaging.lungs import extract_lungs
    from ctscreen.imaging.readers import load_volume
    from ctscreen.imaging.volume import write_mask

    volume = load_volume(args.path, allow_gaps=args.allow_gaps)
    if args.model:
        from ctscreen.inference.lung_region import load_lung_region

        mask, method = load_lung_region(args.model)(volume), f"lung-region model {args.model}"
    else:
        mask, method = extract_lungs(volume), "classical extraction"
    path = write_mask(volume, mask, args.out)
    _print_result({"lung_volume_ml": round(float(mask.sum()) * volume.voxel_volume_ml, 1), "method": method, "mask": str(path)}, args.json)
    return 0


def cmd_preprocess(args) -> int:
    from ctscreen.imaging.preprocess import PreprocessingParameters, preprocess, write_preprocessed
    from ctscreen.imaging.readers import load_volume

    volume = load_volume(args.path, allow_gaps=args.allow_gaps)
    lesions = _read_mask(args.lesion_mask, volume) if args.lesion_mask else None
    case = preprocess(volume, PreprocessingParameters(window=args.window), lesion_mask=lesions)
    _print_result(write_preprocessed(case, args.out), args.json)
    return 0


def _read_mask(path: Path, volume):
    from ctscreen.imaging.readers import load_volume

    mask = load_volume(path)
    if mask.shape_zyx != volume.shape_zyx:
        raise InputError(path, f"mask grid {mask.shape_zyx} differs from the image grid {volume.shape_zyx}")
    return mask.hu > 0


def cmd_deidentify(args) -> int:
    from ctscreen.imaging.deidentify import deidentify_study, load_key

    report = deidentify_study(
        args.src, args.dst, load_key(args.key_file), overwrite=args.overwrite, keep_burned_in=args.keep_burned_in, progress=not args.json
    )
    result = report.to_dict()
    if result.get("burned_in"):
        action = "kept" if args.keep_burned_in else "withheld"
        print(f"warning: {len(result['burned_in'])} image(s) flagged with burned-in annotation were {action}", file=sys.stderr)
    _print_result(result, args.json)
    return 0


def cmd_synth(args) -> int:
    from ctscreen.imaging.synth import generate_dataset

    manifest = generate_dataset(args.out, cases=args.cases, sites=args.sites, seed=args.seed, profile=args.profile)
    print(f"wrote {args.cases} case(s) from {args.sites} site(s); manifest: {manifest}")
    return 0


def _training_config(args):
    from ctscreen.training.config import load_config

    return load_config(args.config, [*args.set, *([f"lung_model={args.lungs.resolve()}"] if args.lungs else [])])


def cmd_train_pairs(args) -> int:
    from ctscreen.training.pairs import run_pairs

    config = _training_config(args)
    summary = run_pairs(args.manifest, args.out, config, cache_dir=args.cache, held_out_site=args.held_out_site, full_grid=args.full_grid,
                        split_fractions=args.split)
    _print_result(summary if args.json else {"winner": summary["winner"], "test": {k: v.get("auc") for k, v in summary["test"].items()},
                                            "bundle": summary["bundle"], "comparison": summary["comparison"]["markdown"]}, args.json)
    return 0


def cmd_train_seg(args) -> int:
    from ctscreen.training.pairs import prepare_sets, train_segmentation_candidates

    config = _training_config(args)
    _, sets = prepare_sets(args.manifest, args.out, config, args.cache, args.held_out_site, split_fractions=args.split)
    runs = train_segmentation_candidates(sets, config, args.out)
    _print_result({name: {"validation_dice": run.best_metric, "checkpoint": str(run.checkpoint)} for name, run in runs.items()}, args.json)
    return 0


def cmd_train_cls(args) -> int:
    from ctscreen.training.pairs import best_segmentation

    chosen = best_segmentation(args.out) if args.segmentation == "best" else args.segmentation
    args.set = [*args.set, f"segmentation.models=[{chosen}]"]
    return cmd_train_pairs(args)


def cmd_train_lungs(args) -> int:
    from ctscreen.training.lungs import load_lung_config, train_lung_region

    summary = train_lung_region(args.manifest, args.out, load_lung_config(args.config, args.set), cache_dir=args.cache)
    shown = {k: summary[k] for k in ("spec", "cases", "validation_dice", "validation_lesion_inside", "best_epoch")}
    _print_result(summary if args.json else {**shown, "model": str(Path(args.out) / "lungs")}, args.json)
    return 0


def cmd_evaluate(args) -> int:
    from ctscreen.evaluation.bundle_evaluation import evaluate_bundle
    from ctscreen.inference.bundle import load_bundle
    from ctscreen.registry.default import current_default_bundle

    bundle = load_bundle(args.bundle) if args.bundle else current_default_bundle()
    case_ids = None
    if args.split:
        try:
            assignment = json.loads(args.split.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(args.split, f"cannot read the split ({exc})") from None
        case_ids = {case for case, name in assignment.items() if name == args.split_name}
    report = evaluate_bundle(bundle, args.manifest, args.out, cache_dir=args.cache, case_ids=case_ids, backend=args.backend)
    shown = {k: report[k] for k in ("cases", "auc", "auc_ci95", "sensitivity", "specificity", "lesion_dice", "threshold", "roc_png")}
    _print_result(report if args.json else shown, args.json)
    return 0


def cmd_screen(args) -> int:
    from ctscreen.inference.bundle import load_bundle
    from ctscreen.inference.screen import screen_study
    from ctscreen.registry.default import current_default_bundle

    predictor = None
    if args.backend == "triton":  # a release of a Triton repository; in-process over the same files if no server serves it
        from serving.triton.client import serving_pair
        from serving.triton.repository import release_bundle

        if args.release is None:
            raise CTScreenError("--backend triton needs --release N (the repository version to screen with)")
        bundle = release_bundle(args.repository, args.release)
        predictor = serving_pair(args.triton_url, args.repository, args.release, args.protocol)
    else:
        bundle = load_bundle(args.bundle) if args.bundle else current_default_bundle()
    out = args.out or Path("screening") / Path(args.path).name.split(".")[0]
    result = screen_study(args.path, bundle, out, backend=args.backend, allow_gaps=args.allow_gaps, window_zyx=args.window, overlap=args.overlap,
                          predictor=predictor)
    _print_result(result, args.json)
    return 0


def cmd_dataset_init(args) -> int:
    from ctscreen.dataset.repository import DatasetRepository

    repo = DatasetRepository.create(args.dataset, args.remote, args.split)
    _print_result({"dataset": str(repo.root), "remote": str(args.remote), "split_fractions": list(repo.split_fractions()), **repo.version()}, args.json)
    return 0


def _fractions(text: str) -> tuple[float, float, float]:
    from ctscreen.training.split import check_fractions

    try:
        return check_fractions(tuple(float(part) for part in text.split(",")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_dataset_ingest(args) -> int:
    from ctscreen.dataset.intake import check_intake, intake_folder
    from ctscreen.dataset.repository import DatasetRepository

    repo = DatasetRepository.open(args.dataset)
    with intake_folder(args.intake) as folder:  # an S3 intake is downloaded first; the cases are copied in before it goes
        report = check_intake(folder)
        added = repo.add_cases(report.accepted, message=f"Ingest {args.intake}")
    for rejected in report.rejected:
        print(f"rejected {rejected['case_id']}: {rejected['reason']}", file=sys.stderr)
    _print_result({**added, "rejected": report.rejected}, args.json)
    return 0


def cmd_dataset_version(args) -> int:
    from ctscreen.dataset.repository import DatasetRepository

    _print_result(DatasetRepository.open(args.dataset).version(args.revision), args.json)
    return 0


def _registry(args):
    from ctscreen.registry.models import ModelRegistry

    return ModelRegistry(args.tracking_uri)


def cmd_registry_list(args) -> int:
    versions = [v.to_dict() for v in _registry(args).versions()]
    if args.json:
        print(json.dumps(versions, indent=2))
    elif not versions:
        print(f"no registered versions yet in {args.tracking_uri}")
    for v in versions if not args.json else ():
        gate = v["tags"].get("gate", "")
        print(f"version {v['version']:>3}  {','.join(v['aliases']) or '-':<22} {v['tags'].get('pair', '')}  test AUC "
              f"{v['tags'].get('figures.test.auc', 'n/a')}  gate {gate}  dataset {v['tags'].get('dataset_rev', '')[:10]}")
    return 0


def cmd_registry_show(args) -> int:
    version = _registry(args).get(args.version)
    figures = version.figures()
    if args.json:
        print(json.dumps({**version.to_dict(), "figures": figures}, indent=2))
        return 0
    print(f"version {version.version} ({', '.join(version.aliases) or 'no alias'}): {version.tags.get('pair', '')}, "
          f"gate {version.tags.get('gate', 'n/a')} ({version.tags.get('gate_reasons', '')})")
    metrics = ("cases", "auc", "sensitivity", "specificity")
    print(f"{'test set':<16} {'site':<14} " + " ".join(f"{m:>11}" for m in (*metrics, "brier", "ece", "lesion_dice")))
    for test_set, entry in sorted(figures.items()):
        print(f"{test_set:<16} {'all':<14} " + " ".join(_cell(entry.get(m)) for m in (*metrics, "brier", "ece", "lesion_dice")))
        for site, values in sorted(entry["by_site"].items()):
            print(f"{'':<16} {site:<14} " + " ".join(_cell(values.get(m)) for m in metrics))
    return 0


def _cell(value) -> str:
    return f"{'n/a':>11}" if value is None else f"{value:>11.4g}"


def cmd_registry_promote(args) -> int:
    _print_result(_registry(args).promote(args.version).to_dict(), args.json)
    return 0


def cmd_registry_rollback(args) -> int:
    _print_result(_registry(args).rollback().to_dict(), args.json)
    return 0


def _pipeline_arguments(args) -> dict:
    return {"intake": str(args.intake), "dataset": str(args.dataset), "tracking_uri": args.mlflow_uri,
            "params": str(args.config) if args.config else None, "overrides": args.set, "gate_overrides": args.gate,
            "lung_overrides": args.lungs_set, "segmentation_models": args.segmentation_models, "classification_models": args.classification_models,
            "signing_key": args.signing_key}


def cmd_pipeline_run(args) -> int:
    from pipelines.runner import run_local

    _print_result(run_local(**_pipeline_arguments(args)), args.json)
    return 0


def cmd_pipeline_compile(args) -> int:
    from pipelines.runner import compile_pipeline

    print(f"wrote {compile_pipeline(args.out)}")
    return 0


def cmd_pipeline_submit(args) -> int:
    from pipelines.runner import pipeline_arguments, submit

    arguments = pipeline_arguments(**_pipeline_arguments(args), cache=args.cache)
    _print_result(submit(args.host, arguments, every=getattr(args, "every", None)), args.json)
    return 0


def cmd_retrain(args) -> int:
    from ctscreen.registry.models import ModelRegistry
    from pipelines.runner import new_case_count, run_local

    versions = ModelRegistry(args.mlflow_uri).versions()
    last_rev = versions[-1].tags.get("dataset_rev") if versions else None
    arrived = new_case_count(args.intake, args.dataset, last_rev)
    if arrived < args.min_new_cases:
        _print_result({"started": False, "new_cases": arrived, "min_new_cases": args.min_new_cases}, args.json)
        return 0
    _print_result({"started": True, "new_cases": arrived, **run_local(**_pipeline_arguments(args))}, args.json)
    return 0


def cmd_stages_simulate(args) -> int:
    from pipelines.stages import simulate

    summary = simulate(args.out, args.stages, args.first, args.growth, args.dataset, args.mlflow_uri, args.sites, args.seed, args.profile,
                       args.set, args.gate, args.config, args.segmentation_models, args.classification_models,
                       lung_overrides=args.lungs_set, split_fractions=args.split)
    _print_result(summary, args.json)
    return 0


def _triton_state(args) -> Path:
    return args.state or home() / "triton"


def cmd_triton_up(args) -> int:
    from serving.triton import server

    started = server.start(args.repository, _triton_state(args), load=args.load, progress=lambda line: print(line, file=sys.stderr))
    _print_result(started.describe(), args.json)
    return 0


def cmd_triton_down(args) -> int:
    from serving.triton import server

    stopped = server.stop(_triton_state(args))
    _print_result({"stopped": stopped is not None, **({"pid": stopped.pid} if stopped else {})}, args.json)
    return 0


def cmd_triton_status(args) -> int:
    from serving.triton import server

    found = server.read_state(_triton_state(args))
    if found is None:
        _print_result({"running": False, "state": str(_triton_state(args))}, args.json)
        return 1
    described = found.describe()
    if described["ready"]:
        described["models"] = found.index()
    _print_result(described, args.json)
    return 0 if described["ready"] else 1


def _store(args, keys: bool = True):
    from serving.release.store import ReleaseStore

    return ReleaseStore.open(args.store, args.keys if keys else None)


def cmd_release_keygen(args) -> int:
    from serving.release.publishing import keygen

    _print_result(keygen(args.keys, args.signing_key), args.json)
    return 0


def cmd_release_init(args) -> int:
    from serving.release.store import ReleaseStore

    store = ReleaseStore.create(args.store, args.keys, timestamp_expiry=_duration(args.timestamp_expiry))
    _print_result({"store": str(store.store_dir), "trusted_root": str(store.root_path),
                   "timestamp_expiry_s": store.expiry["timestamp"].total_seconds()}, args.json)
    return 0


def _duration(text: str):
    from datetime import timedelta

    from ctscreen.durations import duration_seconds

    return timedelta(seconds=duration_seconds(text, "--timestamp-expiry"))


def cmd_release_build(args) -> int:
    import tempfile

    from serving.release.publishing import add_to_store
    from serving.release.registered import registered_bundle
    from serving.triton.repository import build_release

    store = _store(args)
    with tempfile.TemporaryDirectory() as scratch:
        bundle, facts = registered_bundle(args.model, args.tracking_uri, scratch)
        built = build_release(bundle, args.repository, args.public_key, facts, target=args.target)
    record = add_to_store(built, store)
    _print_result({"version": built.version, "created": built.created, "repository": str(built.repository), "store": str(store.store_dir),
                   "files": len(record["files"]),
                   **{k: built.facts.get(k) for k in ("model", "mlflow_version", "pair", "bundle_sha256", "onnx_parity_max_abs")}}, args.json)
    return 0


def cmd_release_publish(args) -> int:
    _print_result(_store(args).publish(args.channel, args.version), args.json)
    return 0


def cmd_release_rollback(args) -> int:
    _print_result({"channel": args.channel, "version": _store(args).rollback(args.channel)}, args.json)
    return 0


def cmd_release_refresh(args) -> int:
    store = _store(args)
    store.refresh_timestamp()
    _print_result({"store": str(store.store_dir), "timestamp_expires": store.describe()["timestamp_expires"]}, args.json)
    return 0


def cmd_release_list(args) -> int:
    described = _store(args, keys=False).describe()
    if args.json:
        print(json.dumps(described, indent=2, default=str))
        return 0
    for release in described["releases"]:
        facts = release["facts"]
        on = [name for name, version in described["channels"].items() if version == release["version"]]
        print(f"release {release['version']:>3}  {','.join(on) or '-':<16} {facts.get('pair', '')}  MLflow version "
              f"{facts.get('mlflow_version', '?')}  dataset {str(facts.get('dataset_version') or '')[:10]}  created {facts.get('created_at', '')}")
    if not described["releases"]:
        print(f"no releases yet in {args.store}")
    print(f"timestamp expires {described['timestamp_expires']}")
    return 0


def cmd_release_serve(args) -> int:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", args.port), functools.partial(SimpleHTTPRequestHandler, directory=str(args.store)))
    print(f"serving the release store {args.store} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _edge_config(args):
    from serving.edge.config import load_edge_config

    return load_edge_config(args.config)


def cmd_edge_agent(args) -> int:
    import logging

    from serving.edge.agent import EdgeAgent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    with EdgeAgent(_edge_config(args)) as agent:
        print(f"edge agent: /metrics, /healthz, /readyz on http://{agent.serve_http()}", file=sys.stderr)
        try:
            agent.run(polls=args.polls)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_edge_status(args) -> int:
    from serving.edge.agent import running_agent
    from serving.edge.state import EdgeState

    config = _edge_config(args)
    state = EdgeState.load(config.state_dir)
    _print_result({"serving": state.serving, "previous": state.previous, "channel": config.channel,
                   "channel_version": state.channel_version, "held_back": state.held_back, "last_poll": state.last_poll,
                   "last_success": state.last_success, "last_error": state.last_failure, "refused": state.refused,
                   "agent": running_agent(config.state_dir)}, args.json)
    return 0


def _service_config(args):
    from serving.edge.service.config import load_service_config

    return load_service_config(args.config)


def cmd_edge_serve(args) -> int:
    import logging
    import signal
    import threading

    from serving.edge.service.app import create_app
    from serving.edge.service.service import EdgeService
    from serving.edge.service.web import WebServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    config = _service_config(args)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with EdgeService(config) as service:
        web = WebServer.for_site(create_app(service, _viewer(config)), config.web).start()
        where = f"DICOM {config.receiver.ae_title}@{config.receiver.host}:{service.receiver.port}" if service.receiver else "no DICOM receiver"
        print(f"edge service {config.site}: {where}; worklist on {web.url}", file=sys.stderr)
        try:
            stopping.wait()
        except KeyboardInterrupt:
            pass
        web.stop()
    return 0


def _viewer(config):
    """OHIF over the PACS's DICOMweb, where the viewer is installed (`make viewer`) and a PACS named."""
    from serving.viewer.app import viewer_router
    from serving.viewer.ohif import ViewerUnavailable, locate_dist

    if config.pacs is None:
        return None
    try:
        dist = locate_dist(config.viewer_dist)
    except ViewerUnavailable as missing:
        print(f"ctscreen edge serve: no viewer: {missing}", file=sys.stderr)
        return None
    return viewer_router(dist, config.pacs.url, config.pacs.credentials())


def cmd_edge_passwd(args) -> int:
    import getpass

    from serving.edge.service.auth import set_password

    config = _service_config(args)
    if config.web.users_file is None:
        raise InputError(args.config, "web.users_file is not set: name the file the users' password hashes are kept in")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.user}: ")
    set_password(config.web.users_file, args.user, password)
    print(f"password of {args.user} set in {config.web.users_file}", file=sys.stderr)
    return 0


def cmd_edge_token(args) -> int:
    from serving.edge.service.auth import new_token

    config = _service_config(args)
    if config.web.tokens_file is None:
        raise InputError(args.config, "web.tokens_file is not set: name the file the token hashes are kept in")
    print(new_token(config.web.tokens_file, args.name))
    print(f"token {args.name} stored (its hash) in {config.web.tokens_file}; it is shown only now", file=sys.stderr)
    return 0


def cmd_edge_studies(args) -> int:
    from serving.edge.service.store import ResultsStore

    config = _service_config(args)
    store = ResultsStore(config.database)
    rows = [{"id": s.id, "arrived": s.last_arrival.isoformat(timespec="seconds"), "status": s.status, "probability": s.probability,
             "positive": s.positive, "model_version": s.model_version, "verdict": s.verdict, "reason": s.reason}
            for s in store.studies(args.status)]
    store.close()
    _print_result({"studies": rows}, args.json)
    return 0


def cmd_edge_rollback(args) -> int:
    import urllib.error
    import urllib.request

    from serving.edge.agent import EdgeAgent, EdgeError, running_agent

    config = _edge_config(args)
    agent = running_agent(config.state_dir)
    if agent is None:  # no agent runs: do it here, holding the node's lock as an agent would
        with EdgeAgent(config) as offline:
            _print_result(offline.rollback(), args.json)
        return 0
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://{agent['http']}/rollback", data=b"", method="POST"), timeout=120) as answer:
            _print_result(json.loads(answer.read()), args.json)
    except urllib.error.HTTPError as error:
        raise EdgeError(json.loads(error.read()).get("error", str(error))) from None
    return 0


def cmd_demo(args) -> int:
    from ctscreen.demo import run_demo

    summary = run_demo(args.out, cases=args.cases, sites=args.sites, seed=args.seed, train=not args.no_train)
    print(f"demo finished: summary in {summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctscreen", description="AI-assisted COVID-19 screening on chest CT.")
    parser.add_argument("--version", action="version", version=f"ctscreen {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def add(name, func, help_):
        sub = verbs.add_parser(name, help=help_, description=help_)
        sub.set_defaults(func=func)
        return sub

    def gaps(sub):
        sub.add_argument("--allow-gaps", action="store_true", help="interpolate across missing slices instead of refusing the series")

    def split_option(sub, help_):
        from ctscreen.training.split import FRACTIONS

        default = ",".join(f"{f:g}" for f in FRACTIONS)
        sub.add_argument("--split", type=_fractions, default=default, metavar="TRAIN,VALIDATION,TEST", help=f"{help_} (default: {default})")

    def training_options(sub, held_out_site: bool = True, lungs: bool = True):
        sub.add_argument("--manifest", type=Path, required=True, help="dataset manifest (CSV), e.g. from `ctscreen synth`")
        sub.add_argument("--out", type=Path, required=True, help="run folder: split, checkpoints, results, figures, models")
        sub.add_argument("--config", type=Path, default=Path("params.yaml") if Path("params.yaml").exists() else None)
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. segmentation.optimiser.epochs=5")
        sub.add_argument("--cache", type=Path, help="preprocessed-case cache (default: under OUT/cache)")
        if held_out_site:
            sub.add_argument("--held-out-site", help="keep this site out of training entirely and report it separately")
            split_option(sub, "fractions of the other sites' cases per set, in a new OUT (an existing OUT keeps its split.json)")
        if lungs:
            sub.add_argument("--lungs", type=Path, help="find the lungs with this lung-region model (`ctscreen train lungs`: OUT/lungs), "
                                                        "which the bundle then carries; default: the classical extraction")
        sub.add_argument("--json", action="store_true")

    info = add("info", cmd_info, "Describe the CT volume read from a DICOM folder or a NIfTI/NRRD/MHA file.")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    gaps(info)

    lungs = add("lungs", cmd_lungs, "Extract the lung region and write it as a mask on the input grid.")
    lungs.add_argument("path", type=Path)
    lungs.add_argument("--out", type=Path, required=True, help="mask file to write (.nii.gz)")
    lungs.add_argument("--model", type=Path, help="a trained lung-region model folder (`ctscreen train lungs`: OUT/lungs); "
                                                 "default: the classical extraction")
    lungs.add_argument("--json", action="store_true")
    gaps(lungs)

    prep = add("preprocess", cmd_preprocess, "Run the paper's preprocessing on one study and write the model-ready volumes.")
    prep.add_argument("path", type=Path)
    prep.add_argument("--out", type=Path, required=True, help="folder to write image, lung and lesion masks and parameters into")
    prep.add_argument("--lesion-mask", type=Path, help="lesion mask on the input grid, carried along")
    prep.add_argument("--window", default="lesion", choices=["lesion", "lung-region"])
    prep.add_argument("--json", action="store_true")
    gaps(prep)

    deid = add("deidentify", cmd_deidentify, "Write a de-identified copy of a DICOM study (PS3.15 Basic Profile).")
    deid.add_argument("src", type=Path)
    deid.add_argument("dst", type=Path)
    deid.add_argument("--key-file", type=Path, help="secret key for UIDs and pseudonyms (else $CTSCREEN_DEID_KEY)")
    deid.add_argument("--overwrite", action="store_true", help="write into a non-empty DST, replacing it")
    deid.add_argument("--keep-burned-in", action="store_true", help="copy images flagged with burned-in annotation (still reported)")
    deid.add_argument("--json", action="store_true")

    synth = add("synth", cmd_synth, "Write a synthetic multi-site chest CT dataset with masks and a manifest.")
    synth.add_argument("out", type=Path)
    synth.add_argument("--cases", type=int, default=10)
    synth.add_argument("--sites", type=int, default=3)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--profile", default="small", help="grid size: tiny, small (default) or full (512 x 512 clinical series)")

    train = add("train", None, "Train models: `train pairs` trains every segmentation x classification pair and picks the winner.")
    train_verbs = train.add_subparsers(dest="what", required=True, metavar="WHAT")
    pairs = train_verbs.add_parser("pairs", help="train, compare and select the segmentation -> classification pairs",
                                   description="Train every segmentation model, select by validation Dice, train every classifier paired "
                                               "with it, select by validation AUC, evaluate on the test split and write a model bundle.")
    pairs.set_defaults(func=cmd_train_pairs)
    training_options(pairs)
    pairs.add_argument("--full-grid", action="store_true", help="pair every classifier with every segmentation model")

    evaluate = add("evaluate", cmd_evaluate, "Evaluate a model bundle on a manifest's cases at the bundle's threshold.")
    evaluate.add_argument("--manifest", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, required=True, help="folder for evaluation.json and roc.png")
    evaluate.add_argument("--bundle", type=Path, help="model bundle folder (default: the platform's current default model)")
    evaluate.add_argument("--split", type=Path, help="a training run's split.json, to evaluate one of its sets only")
    evaluate.add_argument("--split-name", default="test", help="the set of --split to evaluate (default: test)")
    evaluate.add_argument("--cache", type=Path, help="preprocessed-case cache (default: OUT/cache)")
    evaluate.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    evaluate.add_argument("--json", action="store_true")

    seg = train_verbs.add_parser("seg", help="train the segmentation candidates and rank them by validation Dice")
    seg.set_defaults(func=cmd_train_seg)
    training_options(seg)
    cls = train_verbs.add_parser("cls", help="train the classifiers paired with one segmentation model, evaluate, write the bundle",
                                 description="Reuses OUT's split and the segmentation model's finished checkpoint from `train seg`.")
    cls.set_defaults(func=cmd_train_cls, full_grid=False)
    cls.add_argument("--segmentation", required=True, help="the segmentation model to pair with, or `best`: the best of `train seg` in OUT")
    training_options(cls)

    lungs = train_verbs.add_parser("lungs", help="train the lung-region network (the paper's first model) on the manifest's lung masks",
                                   description="Settings: the `lungs:` section of params.yaml. Writes OUT/lungs/: the network, its "
                                               "spec, checkpoints and results.json (validation lung Dice, lesion voxels inside).")
    lungs.set_defaults(func=cmd_train_lungs)
    training_options(lungs, held_out_site=False, lungs=False)

    screen = add("screen", cmd_screen, "Screen one study: COVID-19 probability, the call, the lesion mask and volumes, a picture.")
    screen.add_argument("path", type=Path, help="DICOM folder or image file")
    screen.add_argument("--bundle", type=Path, help="model bundle folder (default: the platform's current default model)")
    screen.add_argument("--out", type=Path, help="folder for masks and the picture (default: screening/<study>)")
    screen.add_argument("--backend", default="torch", choices=["torch", "onnx", "triton"],
                        help="torch or onnx: the bundle in this process; triton: a release through a Triton server")
    screen.add_argument("--triton-url", default="127.0.0.1:8000", help="with --backend triton: the server (host:port of --protocol)")
    screen.add_argument("--protocol", default="http", choices=["http", "grpc"])
    screen.add_argument("--repository", type=Path, default=home() / "triton-repository", help="with --backend triton: the Triton repository")
    screen.add_argument("--release", type=int, help="with --backend triton: the release (repository version) to screen with")
    screen.add_argument("--window", type=int, nargs=3, metavar=("Z", "Y", "X"),
                        help="sliding window, multiples of 16 (default: the training patch); smaller bounds memory")
    screen.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default 0.25)")
    screen.add_argument("--json", action="store_true")
    gaps(screen)

    dataset = add("dataset", None, "The central dataset: a git + DVC repository that intake cases join, versioned.")
    dataset_verbs = dataset.add_subparsers(dest="what", required=True, metavar="WHAT")

    def dataset_option(sub):
        sub.add_argument("--dataset", type=Path, default=dataset_dir(), help=f"dataset repository (default: {dataset_dir()})")
        sub.add_argument("--json", action="store_true")

    init = dataset_verbs.add_parser("init", help="create an empty dataset repository with a DVC remote")
    init.set_defaults(func=cmd_dataset_init)
    init.add_argument("--remote", type=Path, default=dvc_remote(), help=f"DVC remote folder (default: {dvc_remote()})")
    split_option(init, "fractions of the first cases per set; that test set stays frozen")
    dataset_option(init)
    ingest = dataset_verbs.add_parser("ingest", help="check an intake's cases and add the accepted ones (rejections with reasons)")
    ingest.set_defaults(func=cmd_dataset_ingest)
    ingest.add_argument("intake", help="folder with manifest.csv and the cases it lists, or with edge sites' case packages "
                                       "(<case>/manifest.csv each); or s3://[host:port/]bucket/prefix of either, downloaded first")
    dataset_option(ingest)
    version = dataset_verbs.add_parser("version", help="the dataset version: git revision, DVC hash, case count")
    version.set_defaults(func=cmd_dataset_version)
    version.add_argument("--revision", default="HEAD")
    dataset_option(version)

    registry = add("registry", None, "The model registry (MLflow): registered bundles and the champion/challenger aliases.")
    registry_verbs = registry.add_subparsers(dest="what", required=True, metavar="WHAT")

    def registry_option(sub):
        sub.add_argument("--tracking-uri", default=tracking_uri(), help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or SQLite in $CTSCREEN_HOME)")
        sub.add_argument("--json", action="store_true")

    listing = registry_verbs.add_parser("list", help="every registered version with its aliases, pair, test AUC, gate and dataset")
    listing.set_defaults(func=cmd_registry_list)
    registry_option(listing)
    show = registry_verbs.add_parser("show", help="one version's figures on every test set, overall and per site (held-out sites too)")
    show.add_argument("version")
    show.set_defaults(func=cmd_registry_show)
    registry_option(show)
    promote = registry_verbs.add_parser("promote", help="make a version the champion (what sites run)")
    promote.set_defaults(func=cmd_registry_promote)
    promote.add_argument("version")
    registry_option(promote)
    rollback = registry_verbs.add_parser("rollback", help="give the champion alias back to the version it replaced")
    rollback.set_defaults(func=cmd_registry_rollback)
    registry_option(rollback)

    def pipeline_options(sub, intake=True):
        if intake:
            sub.add_argument("--intake", type=Path, required=True, help="folder of new de-identified cases (manifest.csv + files)")
        sub.add_argument("--dataset", type=Path, default=dataset_dir(), help=f"dataset repository (default: {dataset_dir()})")
        sub.add_argument("--mlflow-uri", default=tracking_uri(), help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or SQLite in $CTSCREEN_HOME)")
        sub.add_argument("--config", type=Path, default=Path("params.yaml") if Path("params.yaml").exists() else None)
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training setting")
        sub.add_argument("--gate", action="append", default=[], metavar="KEY=VALUE", help="override a gate setting, e.g. auto_promote=true")
        sub.add_argument("--lungs-set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a lung-region model setting, e.g. optimiser.epochs=8")
        sub.add_argument("--segmentation-models", nargs="+", help="segmentation candidates (default: all four)")
        sub.add_argument("--classification-models", nargs="+", help="classification candidates (default: all four)")
        sub.add_argument("--signing-key", type=Path, default=bundle_signing_key(),
                         help=f"private key that signs registered bundles (default: {bundle_signing_key()}, made on first local run)")
        sub.add_argument("--json", action="store_true")

    pipeline = add("pipeline", None, "The retrain pipeline (Kubeflow Pipelines): run it here, compile it, submit or schedule it on a cluster.")
    pipeline_verbs = pipeline.add_subparsers(dest="what", required=True, metavar="WHAT")
    run = pipeline_verbs.add_parser("run", help="run the pipeline on this machine (kfp.local, DVC local remote, MLflow)")
    run.set_defaults(func=cmd_pipeline_run)
    pipeline_options(run)
    compiled = pipeline_verbs.add_parser("compile", help="write the pipeline's IR YAML for a Kubeflow Pipelines cluster")
    compiled.set_defaults(func=cmd_pipeline_compile)
    compiled.add_argument("--out", type=Path, default=Path("retrain.yaml"))
    for verb, help_ in (("submit", "submit one run to a Kubeflow Pipelines endpoint"), ("schedule", "create a recurring run on a Kubeflow Pipelines endpoint")):
        sub = pipeline_verbs.add_parser(verb, help=help_)
        sub.set_defaults(func=cmd_pipeline_submit)
        sub.add_argument("--host", required=True, help="Kubeflow Pipelines API endpoint, e.g. http://ml-pipeline-ui.kubeflow")
        sub.add_argument("--cache", required=True, help="preprocessed-case cache on the cluster's shared volume")
        if verb == "schedule":
            sub.add_argument("--every", required=True, help="interval: 30m, 12h, 3d, ...")
        pipeline_options(sub)

    retrain = add("retrain", cmd_retrain, "Start a pipeline run when enough new QC-passed cases have arrived since the last registered model.")
    retrain.add_argument("--min-new-cases", type=int, required=True)
    pipeline_options(retrain)

    stages = add("stages", None, "Retraining stages on the synthetic source and the learning curve they draw.")
    stages_verbs = stages.add_subparsers(dest="what", required=True, metavar="WHAT")
    simulate = stages_verbs.add_parser("simulate", help="feed synthetic cases in growing batches, retrain after each, draw the learning curve")
    simulate.set_defaults(func=cmd_stages_simulate)
    simulate.add_argument("--out", type=Path, required=True, help="folder for the intakes, learning_curve.png, figure2b_roc_per_stage.png, stages.json")
    simulate.add_argument("--stages", type=int, default=5)
    simulate.add_argument("--first", type=int, default=20, help="cases in the first batch")
    simulate.add_argument("--growth", type=float, default=1.5, help="each batch this many times the last")
    simulate.add_argument("--sites", type=int, default=3)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--profile", default="small", help="synthetic grid: tiny, small or full")
    split_option(simulate, "fractions of the first batch per set in a new dataset; its test set is every stage's")
    pipeline_options(simulate, intake=False)

    triton = add("triton", None, "A Triton Inference Server on this machine (loopback, explicit model control).")
    triton_verbs = triton.add_subparsers(dest="what", required=True, metavar="WHAT")

    def triton_option(sub):
        sub.add_argument("--state", type=Path, help=f"the server's state folder: pid, ports, log (default: {home() / 'triton'})")
        sub.add_argument("--json", action="store_true")

    up = triton_verbs.add_parser("up", help="obtain tritonserver (first use: one pip download), start it, wait until ready")
    up.set_defaults(func=cmd_triton_up)
    up.add_argument("--repository", default=str(home() / "triton-repository"), help="Triton model repository: a path or an S3 URL")
    up.add_argument("--load", action="append", default=[], metavar="MODEL", help="load this model at start (explicit model control)")
    triton_option(up)
    down = triton_verbs.add_parser("down", help="stop the server")
    down.set_defaults(func=cmd_triton_down)
    triton_option(down)
    status = triton_verbs.add_parser("status", help="whether it runs and is ready, its addresses and its models' states (exit 1 if not ready)")
    status.set_defaults(func=cmd_triton_status)
    triton_option(status)

    release = add("release", None, "Releases: registered bundles as Triton model versions, signed and published on channels.")
    release_verbs = release.add_subparsers(dest="what", required=True, metavar="WHAT")
    def store_options(sub, keys: bool = True):
        sub.add_argument("--store", type=Path, default=release_store(), help=f"the release store (default: {release_store()})")
        if keys:
            sub.add_argument("--keys", type=Path, default=release_keys_dir(), help=f"the store's role keys (default: {release_keys_dir()})")
        sub.add_argument("--json", action="store_true")

    keygen = release_verbs.add_parser("keygen", help="make the release store's role keys and the bundle-signing key (where none exist)")
    keygen.set_defaults(func=cmd_release_keygen)
    keygen.add_argument("--keys", type=Path, default=release_keys_dir())
    keygen.add_argument("--signing-key", type=Path, default=bundle_signing_key())
    keygen.add_argument("--json", action="store_true")
    init = release_verbs.add_parser("init", help="create an empty release store (a TUF repository) signed with the keys")
    init.set_defaults(func=cmd_release_init)
    init.add_argument("--timestamp-expiry", default="1d", help="how long a timestamp is trusted: 30m, 6h, 1d (re-sign with `release refresh`)")
    store_options(init)
    build = release_verbs.add_parser("build", help="a registered bundle as a new Triton repository version and a signed release in the store")
    build.set_defaults(func=cmd_release_build)
    store_options(build)
    build.add_argument("--model", default="ctscreen-screening@champion", help="MODEL@ALIAS or MODEL@VERSION (default: ctscreen-screening@champion)")
    build.add_argument("--repository", default=str(home() / "triton-repository"),
                       help="Triton model repository to add the version to: a path or s3://[host:port/]bucket/prefix")
    build.add_argument("--target", default="cpu", choices=["cpu", "gpu"],
                       help="cpu: ONNX Runtime inside the Python backend; gpu: Triton's native onnxruntime backend")
    build.add_argument("--public-key", type=Path, default=bundle_signing_key().with_suffix(".pub"),
                       help="public key the bundle's model signature must verify against")
    build.add_argument("--tracking-uri", default=tracking_uri(), help="MLflow tracking URI")
    publish = release_verbs.add_parser("publish", help="point a channel at a release")
    publish.set_defaults(func=cmd_release_publish)
    publish.add_argument("--channel", required=True, help="stable, canary, or any name")
    publish.add_argument("--version", type=int, required=True)
    store_options(publish)
    channel_back = release_verbs.add_parser("rollback", help="point a channel back at the release it named before")
    channel_back.set_defaults(func=cmd_release_rollback)
    channel_back.add_argument("--channel", required=True)
    store_options(channel_back)
    refresh = release_verbs.add_parser("refresh", help="re-sign the store's timestamp (run well within its expiry, e.g. from cron)")
    refresh.set_defaults(func=cmd_release_refresh)
    store_options(refresh)
    listing = release_verbs.add_parser("list", help="releases, their facts and the channels naming them")
    listing.set_defaults(func=cmd_release_list)
    store_options(listing, keys=False)
    serve = release_verbs.add_parser("serve", help="serve the store to edge nodes over HTTP on loopback (any static file server will do)")
    serve.set_defaults(func=cmd_release_serve)
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--store", type=Path, default=release_store())

    edge = add("edge", None, "The hospital edge: the agent that takes releases from a channel and serves them from the node's Triton; "
                             "the screening service between the PACS and the physicians.")
    edge_verbs = edge.add_subparsers(dest="what", required=True, metavar="WHAT")

    def edge_options(sub):
        sub.add_argument("--config", type=Path, required=True, help="the node's edge configuration (YAML)")
        sub.add_argument("--json", action="store_true")

    agent = edge_verbs.add_parser("agent", help="run the agent: poll, verify, load, smoke-test, switch, roll back on failure")
    agent.set_defaults(func=cmd_edge_agent)
    agent.add_argument("--polls", type=int, help="stop after this many polls (default: run until stopped)")
    edge_options(agent)
    edge_status = edge_verbs.add_parser("status", help="the release in service, the channel's, the last poll and the last error")
    edge_status.set_defaults(func=cmd_edge_status)
    edge_options(edge_status)
    edge_back = edge_verbs.add_parser("rollback", help="serve the previous release again, now (held back until the channel moves on)")
    edge_back.set_defaults(func=cmd_edge_rollback)
    edge_options(edge_back)

    def service_options(sub):
        sub.add_argument("--config", type=Path, required=True, help="the site's screening service configuration (YAML)")

    serve_site = edge_verbs.add_parser("serve", help="the screening service: studies in from the PACS, screened, results back, "
                                                     "the physicians' worklist and viewer, confirmed cases to central")
    serve_site.set_defaults(func=cmd_edge_serve)
    service_options(serve_site)
    passwd = edge_verbs.add_parser("passwd", help="set a worklist user's password (only its scrypt hash is stored)")
    passwd.set_defaults(func=cmd_edge_passwd)
    service_options(passwd)
    passwd.add_argument("user")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    token = edge_verbs.add_parser("token", help="make an API token (for scripts and Prometheus), printed once")
    token.set_defaults(func=cmd_edge_token)
    service_options(token)
    token.add_argument("name")
    studies = edge_verbs.add_parser("studies", help="the site's studies, newest first, with status and result")
    studies.set_defaults(func=cmd_edge_studies)
    service_options(studies)
    studies.add_argument("--status", help="only studies with this status (receiving, queued, screening, screened, not_screenable, failed)")
    studies.add_argument("--json", action="store_true")

    demo = add("demo", cmd_demo, "The main job end to end on synthetic data; writes a summary and pictures.")
    demo.add_argument("--out", type=Path, default=Path("demo-output"))
    demo.add_argument("--cases", type=int, default=140)
    demo.add_argument("--sites", type=int, default=3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-train", action="store_true", help="stop after preprocessing (no model training)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CTScreenError as exc:
        print(f"ctscreen {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"ctscreen {args.verb}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
