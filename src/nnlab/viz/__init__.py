"""Pictures: learning curves, confusion matrix, image grids; ``inside``: what a conv net sees."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid


def learning_curves(history_csv: Path, out: Path, title: str = "") -> None:
    """Accuracy and loss per epoch (counted from 1), training against validation."""
    history = pd.read_csv(history_csv).assign(epoch=lambda h: h.epoch + 1)
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), ("acc", "loss"), strict=True):
        history.plot(
            x="epoch",
            y=[f"train/{metric}", f"val/{metric}"],
            style=["o-", "s--"],
            ax=ax,
            grid=True,
            title=f"{title} {metric}".strip(),
        )
    fig.savefig(out, dpi=100)


def confusion_matrix(metric: MulticlassConfusionMatrix, classes: list[str], out: Path, title=""):
    """The (already updated) metric's counts, true class by predicted class."""
    fig = Figure(figsize=(max(4, 1.5 + 0.6 * len(classes)),) * 2, layout="constrained")
    _, ax = metric.plot(ax=fig.add_subplot(), labels=list(classes))
    ax.set_title(f"{title} confusion matrix".strip())
    fig.savefig(out, dpi=100)


def image_grid(tiles, labels: list[str], out: Path, cols=8, title="", scale_each=False) -> None:
    """(N, C, H, W) floats in [0, 1] (any with ``scale_each``) or (N, H, W, C) uint8 arrays as one
    mosaic (a subplot per tile is slow), each under its label."""
    if isinstance(tiles, np.ndarray):
        tiles = torch.as_tensor(tiles).permute(0, 3, 1, 2) / 255
    h, w = tiles.shape[-2:]
    pad = max(2, h // 4)  # the gap above each tile holds its label
    scaling = {"normalize": scale_each, "scale_each": scale_each}
    grid = make_grid(tiles.cpu().float(), nrow=cols, padding=pad, pad_value=1.0, **scaling)
    width = max(1.6 * cols, 6.4 if title else 0)
    height = width * grid.shape[1] / grid.shape[2] + 0.4 * bool(title)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest" if h < 64 else "antialiased")
    for i, label in enumerate(labels):
        r, c = divmod(i, cols)
        xy = (pad + c * (w + pad) + w / 2, r * (h + pad) + pad / 2)
        ax.text(*xy, label, ha="center", va="center", fontsize=7)
    ax.axis("off")
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.savefig(out, dpi=100)


def augmented_samples(images: np.ndarray, augment: Callable, out: Path, rows=4, per_image=7):
    """Each row: a training image (HWC uint8), then ``per_image`` draws of ``augment``."""
    picks = images[np.linspace(0, len(images) - 1, rows).astype(int)]  # spread over classes
    tiles = [img for src in picks for img in (src, *(augment(src) for _ in range(per_image)))]
    labels = ["original", *["augmented"] * per_image] * rows
    image_grid(np.stack(tiles), labels, out, cols=per_image + 1)


def misclassified(images: np.ndarray, y, probs, classes: list[str], out: Path, limit=24) -> None:
    """The test images (HWC uint8) the model got most confidently wrong; none: no file."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]
    if len(wrong):
        labels = [f"{classes[y[i]]}→{classes[pred[i]]} {probs[i, pred[i]]:.2f}" for i in wrong]
        title = "most confidently wrong: actual→predicted class, predicted probability"
        image_grid(np.asarray(images[wrong]), labels, out, title=title)


def example_indices(y: np.ndarray, n: int = 6) -> list[int]:
    """Up to ``n`` indices of ``y``: each class's first sample, then each one's second..."""
    rank = pd.Series(y).groupby(y).cumcount()  # a sample's place among those of its class
    return sorted(np.lexsort((y, rank))[:n].tolist())
