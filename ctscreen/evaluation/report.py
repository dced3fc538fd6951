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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
