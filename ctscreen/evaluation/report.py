"""The comparison of trained pairs as a table (CSV + Markdown) and Figure-2-style plots (PNG)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ctscreen.evaluation.classification import auc, roc


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, dpi: int = 110) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def write_table(rows: list[dict], stem: Path) -> tuple[Path, Path]:
    """``stem``.csv and ``stem``.md with one row per pair; floats rounded for reading."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else []
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def cell(value):
        return f"{value:.3f}" if isinstance(value, float) else ("" if value is None else str(value))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".csv"), stem.with_suffix(".md")


def plot_roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """One ROC curve per entry (label -> (labels, scores)), AUC in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (labels, scores) in curves.items():
        value = auc(labels, scores)
        if value is None:
            continue
        curve = roc(labels, scores)
        ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {value:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, path)


def plot_reliability_diagram(calibration: dict, path: Path, title: str) -> Path:
    """Observed positive fraction against mean predicted probability per bin (``calibration`` as
    ``ctscreen.evaluation.calibration.calibration`` returns it); markers sized by case count and
    annotated with it. Points on the diagonal are scores that mean what they say."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    bins = calibration["bins"]
    x = [b["mean_predicted"] for b in bins]
    y = [b["observed_fraction"] for b in bins]
    counts = [b["count"] for b in bins]
    largest = max(counts, default=1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8, label="perfectly calibrated")
    ax.plot(x, y, color="tab:blue", linewidth=0.8)
    ax.scatter(x, y, s=[20 + 180 * c / largest for c in counts], color="tab:blue", zorder=3,
               label=f"Brier {calibration['brier']:.3f}, ECE {calibration['ece']:.3f}")
    for x_, y_, c in zip(x, y, counts):
        ax.annotate(str(c), (x_, y_), textcoords="offset points", xytext=(6, -10), fontsize=7)
    ax.set(xlabel="mean predicted probability", ylabel="observed positive fraction", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    return _save(plt, fig, path)


def plot_examples(examples: list[dict], path: Path) -> Path:
    """Example slices: each dict has title, image (z, y, x in [0, 1]), truth and prediction masks."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(examples), 1), figsize=(4 * max(len(examples), 1), 4.4), squeeze=False)
    for ax, example in zip(axes[0], examples):
        truth, predicted = example["truth"], example["prediction"]
        burden = truth.sum(axis=(1, 2)) + predicted.sum(axis=(1, 2))
        z = int(np.argmax(burden)) if burden.any() else truth.shape[0] // 2
        ax.imshow(example["image"][z], cmap="gray", vmin=0, vmax=1)
        if truth[z].any():
            ax.contour(truth[z], levels=[0.5], colors="yellow", linewidths=0.8)
        if predicted[z].any():
            ax.contour(predicted[z], levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(example["title"], fontsize=8)
        ax.axis("off")
    fig.suptitle("predicted lesions in red, annotated lesions in yellow", fontsize=9)
    return _save(plt, fig, path, dpi=100)


def plot_learning_curve(stages: list[dict], path: Path) -> Path:
    """Test AUC with its 95% CI against training cases, one point per retraining stage (each dict:
    ``stage``, ``train_cases``, ``auc``, ``auc_ci95``, ``champion``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = [s["train_cases"] for s in stages]
    y = [s["auc"] if s["auc"] is not None else np.nan for s in stages]
    low = [y_ - (s["auc_ci95"] or [y_, y_])[0] for s, y_ in zip(stages, y)]
    high = [(s["auc_ci95"] or [y_, y_])[1] - y_ for s, y_ in zip(stages, y)]
    ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4, label="test AUC (95% CI)")
    for s, x_, y_ in zip(stages, x, y):
        ax.annotate(f"stage {s['stage']}" + (" (champion)" if s["champion"] else ""), (x_, y_), textcoords="offset points",
                    xytext=(4, -12), fontsize=7)
    ax.set(xlabel="training cases", ylabel="AUC on the frozen test set", ylim=(0, 1.02), title="Learning curve over retraining stages")
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, path)
