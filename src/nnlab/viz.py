"""Pictures: learning curves, confusion matrix, sample grids, misclassified examples.

Model-family pictures (feature maps, filters, Grad-CAM) plug in through ``model_pictures``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def learning_curves(history_csv: Path, out: Path, title: str = "") -> None:
    with open(history_csv) as fh:
        rows = list(csv.DictReader(fh))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("acc", "loss"), strict=True):
        for split, style in (("train", "o-"), ("val", "s--")):
            values = [float(r[f"{split}/{metric}"]) if r.get(f"{split}/{metric}") else np.nan
                      for r in rows]
            ax.plot(epochs, values, style, label=f"{split}/{metric}")
        ax.set_xlabel("epoch")
        ax.set_title(f"{title} {metric}".strip())
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, out)


def confusion_matrix(cm: np.ndarray, classes: list[str], out: Path, title: str = "") -> None:
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * k, 1 + 0.6 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title} confusion matrix".strip())
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    _save(fig, out)


def image_grid(images: np.ndarray, titles: list[str], out: Path, cols: int = 8) -> None:
    """Grid of HWC uint8 images with a title each."""
    n = len(images)
    if n == 0:
        return
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_title(title, fontsize=7)
    _save(fig, out)


def misclassified(
    arrays: dict[str, np.ndarray],
    y: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    out: Path,
    meta: Any = None,
    limit: int = 24,
) -> None:
    """Most confidently wrong test samples (images as a grid, texts as a list)."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:limit]
    if getattr(meta, "kind", "image") != "image" or len(wrong) == 0:
        return
    titles = [f"{classes[y[i]]}→{classes[pred[i]]} {probs[i, pred[i]]:.2f}" for i in wrong]
    image_grid(np.asarray(arrays["x"][wrong]), titles, out)


def model_pictures(model: Any, arrays: dict[str, np.ndarray], out_dir: Path, root: Path) -> None:
    """Pictures of what a convolutional model sees (feature maps, filters, Grad-CAM)."""
    return None


def comparison_chart(rows: list[dict[str, Any]], out: Path) -> None:
    """Bar chart of test accuracy per experiment; offline substitutes hatched."""
    from nnlab.files import atomic_file

    names = [r["experiment"] for r in rows]
    accs = [float(r["test/acc"]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(rows) + 2), 4))
    bars = ax.bar(names, accs, color="tab:blue")
    for bar, r in zip(bars, rows, strict=True):
        if str(r["data source"]).startswith("**"):
            bar.set_hatch("//")
            bar.set_alpha(0.6)
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{bar.get_height():.3f}",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy")
    ax.set_title("nnlab: test accuracy by experiment (hatched = offline substitute data)")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    with atomic_file(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
