"""Pictures: learning curves, confusion matrix, sample grids, misclassified examples.

Model-family pictures (feature maps, filters, Grad-CAM) plug in through ``model_pictures``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


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


def augmented_samples(
    images: np.ndarray, augment: Any, out: Path, rows: int = 4, per_image: int = 7
) -> None:
    """Each row: a training image, then ``per_image`` draws of the augmentation pipeline."""
    picks = np.asarray(images[np.linspace(0, len(images) - 1, rows).astype(int)])  # all classes
    grid = [img for src in picks for img in (src, *(augment(src) for _ in range(per_image)))]
    titles = [t for _ in picks for t in ("original", *(["augmented"] * per_image))]
    image_grid(np.stack(grid), titles, out, cols=per_image + 1)


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


# ----------------------------------------------------------------------------- looking inside
# What a convolutional net sees (the lecture's "visualizing what convnets learn"): the outputs
# of its first conv layers for one image, the filters of its first conv layer, and Grad-CAM
# heatmaps (Selvaraju et al. 2017) of the predicted class over a few test images. Generic over
# nets: the conv layers are found by walking the modules; nets without any (MLP, RNN) and
# non-image data get none of these pictures.


def conv_layers(net: Any) -> list[tuple[str, Any]]:
    """(name, module) of every Conv2d, in registration (= forward, for these nets) order."""
    from torch import nn

    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


def layer_outputs(net: Any, x: Any, modules: list[Any]) -> list[Any]:
    """The outputs of ``modules`` for the batch ``x`` (copies, before any in-place ReLU)."""
    import torch

    captured: dict[int, Any] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: captured.__setitem__(id(mod), o.clone()))
             for m in modules]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return [captured[id(m)] for m in modules]


def grad_cam(net: Any, x: Any, layer: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the predicted class: ((N, H, W) heatmaps in [0, 1] at the input's size,
    (N,) predicted classes). ``layer`` defaults to the net's last Conv2d."""
    import torch
    import torch.nn.functional as F

    if layer is None:
        convs = conv_layers(net)
        if not convs:
            raise ValueError("grad_cam: the net has no Conv2d layer")
        layer = convs[-1][1]
    store: dict[str, Any] = {}

    def hook(module, inputs, output):
        store["a"] = output
        return output.clone()  # what follows (an in-place ReLU) must not overwrite `a`

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)  # a graph even through frozen layers
            logits = net(inp).float()
            if logits.shape[-1] == 1:  # one logit: evidence for "1" is +logit, for "0" -logit
                pred = (logits[:, 0] > 0).long()
                score = torch.where(pred == 1, logits[:, 0], -logits[:, 0])
            else:
                pred = logits.argmax(-1)
                score = logits.gather(1, pred[:, None])[:, 0]
            (grads,) = torch.autograd.grad(score.sum(), store["a"])
    finally:
        handle.remove()
    a = store["a"].detach().float()
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
    return (cam / peak).numpy(), pred.numpy()


def _as_image(x: np.ndarray) -> np.ndarray:
    """CHW float in [0, 1] -> HW(C) for imshow."""
    img = np.clip(np.asarray(x).transpose(1, 2, 0), 0, 1)
    return img[..., 0] if img.shape[-1] == 1 else img


def feature_maps(
    net: Any, x: Any, out: Path, n_layers: int = 3, per_layer: int = 16, title: str = ""
) -> None:
    """One image's outputs of the first ``n_layers`` conv layers, ``per_layer`` channels each."""
    convs = conv_layers(net)[:n_layers]
    maps = layer_outputs(net, x[:1], [m for _, m in convs])
    fig, axes = plt.subplots(len(convs) + 1, per_layer, squeeze=False,
                             figsize=(1.1 * per_layer, 1.25 * (len(convs) + 1)))
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(_as_image(x[0].detach().cpu().numpy()),
                      cmap="gray" if x.shape[1] == 1 else None)
    axes[0, 0].set_title("input", fontsize=7)
    fig.suptitle(f"{title} outputs of the first conv layers (up to {per_layer} channels "
                 f"each)".strip(), fontsize=9)
    for row, ((name, _), fmap) in enumerate(zip(convs, maps, strict=True), 1):
        fmap = fmap[0].float().numpy()
        for c in range(min(per_layer, len(fmap))):
            axes[row, c].imshow(fmap[c], cmap="viridis")
        axes[row, 0].set_title(f"{name} {tuple(fmap.shape)}", fontsize=6, loc="left")
    _save(fig, out)


def conv_filters(conv: Any, out: Path, limit: int = 64, title: str = "") -> None:
    """The kernels of one conv layer: RGB tiles for 3 input channels, else their mean, each
    scaled to [0, 1]."""
    w = conv.weight.detach().float().cpu().numpy()[:limit]
    w = w if w.shape[1] == 3 else w.mean(axis=1, keepdims=True)
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    tiles = (w - lo) / np.maximum(hi - lo, 1e-12)
    cols = 8
    rows = (len(tiles) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles, strict=False):
        ax.imshow(_as_image(tile), cmap="gray" if tile.shape[0] == 1 else None,
                  interpolation="nearest")
    fig.suptitle(f"{title} first conv layer: {len(tiles)} of {conv.weight.shape[0]} filters "
                 f"{tuple(conv.weight.shape[1:])}".strip(), fontsize=9)
    _save(fig, out)


def gradcam_figure(images: np.ndarray, cams: np.ndarray, titles: list[str], out: Path) -> None:
    """Each column: a test image and its Grad-CAM heatmap laid over it."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2 * n, 4.3), squeeze=False)
    for i in range(n):
        img = _as_image(images[i])
        gray = img.ndim == 2
        axes[0, i].imshow(img, cmap="gray" if gray else None)
        axes[0, i].set_title(titles[i], fontsize=7)
        axes[1, i].imshow(img, cmap="gray" if gray else None)
        axes[1, i].imshow(cams[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.axis("off")
    axes[1, 0].set_title("Grad-CAM, predicted class", fontsize=7, loc="left")
    _save(fig, out)


def model_pictures(
    model: Any, arrays: dict[str, np.ndarray], out_dir: Path, root: Path, n: int = 6
) -> list[Path]:
    """feature_maps.png, filters.png and gradcam.png for a few test images, for any net with
    conv layers on image data (``model`` is a Classifier); returns the files written."""
    from nnlab.data.datamodule import ArrayDataset

    if model.spec.kind != "image" or not conv_layers(model.net) or "x" not in arrays:
        return []
    y = np.asarray(arrays["y"])
    per_class = [np.flatnonzero(y == c)[: (n + 1) // 2] for c in np.unique(y)]
    picks = sorted(int(i) for i in np.concatenate(per_class)[:n]) if len(y) else []
    if not picks:
        return []
    batch = ArrayDataset({"x": arrays["x"], "y": y}).__getitems__(picks)
    (x,) = model.inputs(batch)
    net = model.net.eval()
    out_dir = Path(out_dir)
    feature_maps(net, x, out_dir / "feature_maps.png")
    conv_filters(conv_layers(net)[0][1], out_dir / "filters.png")
    cams, pred = grad_cam(net, x)
    classes = list(model.spec.classes)
    titles = [f"{classes[y[i]]}: predicted {classes[p]}" for i, p in zip(picks, pred, strict=True)]
    gradcam_figure(x.detach().float().cpu().numpy(), cams, titles, out_dir / "gradcam.png")
    return [out_dir / f for f in ("feature_maps.png", "filters.png", "gradcam.png")]


def comparison_chart(rows: list[dict[str, Any]], out: Path) -> None:
    """Bar chart of test accuracy per experiment; offline substitutes hatched."""
    from nnlab.files import atomic_file

    names = [r["experiment"] for r in rows]
    accs = [float(r["test/acc"]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(rows) + 2), 4))
    bars = ax.bar(names, accs, color="tab:blue")
    for bar, r in zip(bars, rows, strict=True):
        if str(r["data source"]).startswith("**") or str(r.get("pretrained", "")).startswith("**"):
            bar.set_hatch("//")
            bar.set_alpha(0.6)
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{bar.get_height():.3f}",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy")
    ax.set_title("nnlab: test accuracy by experiment\n(hatched = offline substitute data or "
                 "pretrained backbone)", fontsize=10)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    with atomic_file(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
