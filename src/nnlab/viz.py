"""Pictures: learning curves, confusion matrix, sample grids, misclassified examples, and
what conv nets see inside (``model_pictures``: feature maps, filter patterns, Grad-CAM).
"""

from __future__ import annotations

import contextlib
import csv
import re
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: Path) -> None:
    if fig.get_layout_engine() is None:
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


def _tiles_rgb(images: Any) -> np.ndarray:
    """(N, H, W, 3) floats in [0, 1] from uint8 or float, grey or RGB, HW or HWC images."""
    arr = np.asarray(images)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    return np.clip(np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr, 0, 1)


def image_grid(
    images: np.ndarray, titles: list[str], out: Path, cols: int = 8, title: str = ""
) -> None:
    """Grid of HW(C) images (uint8, or float in [0, 1]) with a title each.

    Drawn as ONE mosaic image with the titles as text (a subplot per tile costs matplotlib
    tens of milliseconds each: this keeps evaluate's pictures fast)."""
    n = len(images)
    if n == 0:
        return
    tiles = _tiles_rgb(images)
    h, w = tiles.shape[1:3]
    rows = (n + cols - 1) // cols
    gap_x, gap_y = max(2, w // 12), max(4, int(h * 0.24))  # room for each tile's title
    mosaic = np.ones((rows * (h + gap_y), cols * (w + gap_x) - gap_x, 3), dtype=np.float32)
    width = max(1.6 * cols, 6.4 if title else 0)
    head = 0.35 + 0.15 * title.count("\n") if title else 0.0
    fig = plt.figure(figsize=(width, 1.8 * rows + head))
    ax = fig.add_axes((0, 0, 1, 1 - head / (1.8 * rows + head)))
    for i, (tile, label) in enumerate(zip(tiles, titles, strict=False)):
        r, c = divmod(i, cols)
        y0, x0 = r * (h + gap_y) + gap_y, c * (w + gap_x)
        mosaic[y0:y0 + h, x0:x0 + w] = tile
        ax.text(x0 + w / 2, y0 - gap_y / 2, label, ha="center", va="center", fontsize=7)
    ax.imshow(mosaic, interpolation="nearest" if h < 64 else "antialiased")
    ax.axis("off")
    if title:  # wrapped to the figure's width (about 14 characters an inch at this size)
        fig.suptitle("\n".join(textwrap.fill(line, int(14 * width)) for line in title.split("\n")),
                     fontsize=8)
    fig.savefig(out, dpi=100)
    plt.close(fig)


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
# What a convolutional net sees (the lecture's "visualizing what convnets learn"):
# - feature maps: the outputs of its first conv layers for one image;
# - filter patterns: for a few filters at several depths, the input that maximises the filter's
#   mean activation, found by gradient ascent in input space (inputs are in [0, 1]; any
#   normalisation is inside the net);
# - Grad-CAM (Selvaraju et al. 2017): where the last conv layer's evidence for the predicted
#   class lies, as a colour-mapped heatmap over the photo.
# Generic over nets: conv layers are found by walking the modules (a plain nn.Sequential, a
# TransferNet with ``.base`` blocks, or base and head composed); nets without any (MLP, RNN)
# and non-image data get none of these pictures. The net's parameters are never changed and
# never receive gradients.

_BLOCK = re.compile(r"(?:^|\.)(block\d+)$")


def conv_layers(net: Any) -> list[tuple[str, Any]]:
    """(name, module) of every Conv2d, in registration (= forward, for these nets) order."""
    from torch import nn

    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


def _activations() -> tuple[type, ...]:
    from torch import nn

    return nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish


def _activated(net: Any, conv: Any) -> Any:
    """The activation module that follows ``conv`` in its parent nn.Sequential (past any
    BatchNorm), if there is one used only there, else ``conv``: the mean of a conv's linear
    output depends only on the input's mean colour, its rectified output's does not."""
    from torch import nn

    acts = _activations()
    uses = [m for _, m in net.named_modules(remove_duplicate=False)]
    for parent in net.modules():
        children = list(parent.children()) if isinstance(parent, nn.Sequential) else []
        if not any(c is conv for c in children):
            continue
        after = children[[c is conv for c in children].index(True) + 1:]
        after = [c for c in after if not isinstance(c, nn.BatchNorm2d)][:1]
        if after and isinstance(after[0], acts) and sum(m is after[0] for m in uses) == 1:
            return after[0]
    return conv


def pattern_layers(net: Any, n: int = 3) -> list[tuple[str, Any]]:
    """``n`` conv layers spread over the net's depth (first, middle, last for n=3), labelled
    like Keras: for a net with ``blockK`` modules (a TransferNet's base) the last conv of the
    first, middle and last block (``block1_conv2``, ``block3_conv3``, ``block5_conv3`` for
    VGG16); otherwise ``conv1``, ``conv3``, ... counting all the net's Conv2d layers. The
    module returned is the conv's activation where it has one (:func:`_activated`), as a
    Keras ``Conv2D(activation="relu")`` layer's output is."""
    convs = {id(m): i for i, (_, m) in enumerate(conv_layers(net), 1)}
    candidates = []
    for name, block in net.named_modules():
        match = _BLOCK.search(name)
        in_block = conv_layers(block) if match else []
        if in_block:
            candidates.append((f"{match.group(1)}_conv{len(in_block)}", in_block[-1][1]))
    if not candidates:
        candidates = [(f"conv{convs[id(m)]}", m) for _, m in conv_layers(net)]
    if not candidates:
        return []
    picks = np.unique(np.linspace(0, len(candidates) - 1, max(n, 1)).round().astype(int))
    return [(candidates[i][0], _activated(net, candidates[i][1])) for i in picks]


class _Reached(Exception):
    """Raised by a forward hook: the layer being studied has been computed, stop there."""

    def __init__(self, output: Any):
        super().__init__()
        self.output = output


def _output_of(net: Any, module: Any, x: Any, keep_input: bool = False) -> tuple[Any, Any]:
    """(``module``'s output, a copy of its input if ``keep_input`` else None) for the net's
    input ``x``, running the net only up to that module."""
    seen: dict[str, Any] = {}

    def copy_input(mod, inputs):
        seen["input"] = inputs[0].clone()  # before an in-place activation overwrites it

    def stop(mod, inputs, output):
        raise _Reached(output)

    handles = [module.register_forward_pre_hook(copy_input)] if keep_input else []
    handles.append(module.register_forward_hook(stop))
    try:
        net(x)
    except _Reached as reached:
        return reached.output, seen.get("input")
    finally:
        for handle in handles:
            handle.remove()
    raise ValueError(f"{type(module).__name__} is not used in the net's forward pass")


@contextlib.contextmanager
def _inspecting(net: Any):
    """The net in eval mode with no parameter requiring grad; each module's mode and each
    parameter's flag restored afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    flags = [(p, p.requires_grad) for p in net.parameters()]
    net.eval().requires_grad_(False)
    try:
        yield net
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def _device(net: Any) -> Any:
    import torch

    return next(net.parameters(), torch.empty(0)).device


def ascend_filters(
    net: Any, module: Any, *, in_channels: int = 3, filters: int = 8, steps: int = 30,
    size: int = 64, seed: int = 0, lr: float = 0.02, jitter: int = 2,
) -> Any:
    """Gradient ascent in input space: (k, in_channels, size, size) images in [0, 1], image i
    maximising the mean activation (2-pixel border excluded) of channel i of ``module``'s
    output, k = min(filters, channels). Starts from grey plus small seeded noise; each step
    moves by ``lr`` times the gradient divided by its RMS (per image) and clamps to [0, 1];
    a seeded random shift of up to ``jitter`` pixels before each step keeps the patterns from
    locking onto single pixels. All filters of the layer are optimised as one batch; the net
    runs only up to ``module``. The net must be in eval mode (see :func:`filter_patterns`).
    For an activation module (ReLU...) the objective adds 1% of the mean of its input, so
    that a filter silent on grey noise still gets a gradient towards what wakes it up."""
    import torch

    leak = 0.01 if isinstance(module, _activations()) else 0.0
    gen = torch.Generator().manual_seed(seed)
    img = (0.5 + 0.02 * torch.randn(filters, in_channels, size, size, generator=gen))
    img = img.clamp(0, 1).to(_device(net))
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=gen)
    shifts[steps - steps // 3:] = 0  # the last third unshifted: ends on the filter's own mean
    with torch.enable_grad():
        for dy, dx in shifts.tolist():
            img.requires_grad_(True)
            act, pre = _output_of(net, module, torch.roll(img, (dy, dx), dims=(2, 3)), leak > 0)
            if act.ndim != 4:
                raise ValueError(f"filter patterns need a conv layer's (N, C, H, W) output, "
                                 f"{type(module).__name__} gives {tuple(act.shape)}")
            k = min(filters, act.shape[1])
            score = _channel_means(act[:k], k)
            if leak:
                score = score + leak * _channel_means(pre[:k], k)
            (grad,) = torch.autograd.grad(score.sum(), img)
            grad = grad[:k] / grad[:k].pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().add(1e-8)
            img = (img.detach()[:k] + lr * grad).clamp_(0, 1)
    return img.detach()


def _channel_means(act: Any, k: int) -> Any:
    """(k,): mean of channel i of sample i, without a 2-pixel border when the map is large."""
    import torch

    if min(act.shape[-2:]) >= 8:
        act = act[..., 2:-2, 2:-2]
    idx = torch.arange(k, device=act.device)
    return act[idx, idx].float().mean(dim=(1, 2))


def _stretch(img: np.ndarray) -> np.ndarray:
    """CHW pattern -> HW(C) with its contrast stretched for display (mean 0.5, std 0.15)."""
    img = np.asarray(img, dtype=np.float64)
    img = (img - img.mean()) / max(img.std(), 1e-8) * 0.15 + 0.5
    return _as_image(img)


def filter_patterns(
    net: Any, layers: list[tuple[str, Any]], out_dir: Path, *, filters: int = 8,
    steps: int = 30, size: int = 64, seed: int = 0, lr: float = 0.02, jitter: int = 2,
) -> list[Path]:
    """One grid per layer, ``filter_patterns_<name>.png``: the inputs that maximise the mean
    activation of the layer's first ``filters`` channels (:func:`ascend_filters`). Cost grows
    with ``filters * steps * size**2`` and with the layer's depth."""
    from torch import nn

    depth, convs = {}, 0  # module -> (convs up to and including it, its path)
    for path, m in net.named_modules():
        convs += isinstance(m, nn.Conv2d)
        depth[id(m)] = (convs, f"{path}: {type(m).__name__}")
    first = next(iter(conv_layers(net)), (None, None))[1]
    in_channels = first.in_channels if first is not None else 3
    written = []
    with _inspecting(net):
        for name, module in layers:
            images = ascend_filters(net, module, in_channels=in_channels, filters=filters,
                                    steps=steps, size=size, seed=seed, lr=lr,
                                    jitter=jitter).cpu().numpy()
            i, path = depth.get(id(module), (0, name))
            where = f"after conv layer {i} of {convs}, '{path}'" if i else f"'{path}'"
            title = (f"{name} ({where}): input maximising each channel's mean activation\n"
                     f"{steps} steps of gradient ascent from grey noise (seed {seed}), "
                     f"{size}x{size} px, contrast stretched")
            out = Path(out_dir) / f"filter_patterns_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
            image_grid(np.stack([_stretch(im) for im in images]),
                       [f"channel {c}" for c in range(len(images))], out,
                       cols=min(8, len(images)), title=title)
            written.append(out)
    return written


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


def grad_cam(net: Any, x: Any, layer: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM of the predicted class: ((N, H, W) heatmaps in [0, 1] at the input's size,
    (N,) predicted classes, (N,) their probabilities: sigmoid of a single logit, softmax of
    several). ``layer`` defaults to the net's last Conv2d. Runs the net in eval mode."""
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
        with _inspecting(net), torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)  # a graph even through frozen layers
            logits = net(inp).float()
            if logits.shape[-1] == 1:  # one logit: evidence for "1" is +logit, for "0" -logit
                pred = (logits[:, 0] > 0).long()
                score = torch.where(pred == 1, logits[:, 0], -logits[:, 0])
                prob = torch.sigmoid(score)
            else:
                pred = logits.argmax(-1)
                score = logits.gather(1, pred[:, None])[:, 0]
                prob = logits.softmax(-1).gather(1, pred[:, None])[:, 0]
            (grads,) = torch.autograd.grad(score.sum(), store["a"])
    finally:
        handle.remove()
    a = store["a"].detach().float()
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
    return (cam / peak).cpu().numpy(), pred.cpu().numpy(), prob.detach().cpu().numpy()


def _as_image(x: np.ndarray) -> np.ndarray:
    """CHW float in [0, 1] -> HW(C) for imshow."""
    img = np.clip(np.asarray(x).transpose(1, 2, 0), 0, 1)
    return img[..., 0] if img.shape[-1] == 1 else img


def feature_maps(
    net: Any, x: Any, out: Path, n_layers: int = 3, per_layer: int = 16, title: str = ""
) -> None:
    """One image's outputs of the first ``n_layers`` conv layers, ``per_layer`` channels each
    (each channel scaled to its own range, viridis), under the input image."""
    from matplotlib import colormaps

    convs = conv_layers(net)[:n_layers]
    with _inspecting(net):
        maps = layer_outputs(net, x[:1], [m for _, m in convs])
    image = _tiles_rgb(_as_image(x[0].detach().float().cpu().numpy())[None])[0]
    size = image.shape[0]
    blank = np.ones_like(image)
    tiles, titles = [image, *[blank] * (per_layer - 1)], ["input", *[""] * (per_layer - 1)]
    for (name, _), fmap in zip(convs, maps, strict=True):
        fmap = fmap[0].float().cpu().numpy()[:per_layer]
        for c, m in enumerate(fmap):
            m = (m - m.min()) / max(float(m.max() - m.min()), 1e-12)
            rgb = colormaps["viridis"](m)[..., :3]
            idx = np.linspace(0, m.shape[0] - 1, size).astype(int)  # nearest-neighbour resize
            tiles.append(rgb[idx][:, idx])
            titles.append(f"{name} c{c}" if c == 0 else f"c{c}")
        tiles += [blank] * (per_layer - len(fmap))
        titles += [""] * (per_layer - len(fmap))
    image_grid(np.stack(tiles), titles, out, cols=per_layer,
               title=f"{title} outputs of the first conv layers for one test image (up to "
                     f"{per_layer} channels each, each scaled to its own range)".strip())


def conv_weights(conv: Any, out: Path, limit: int = 32, title: str = "") -> None:
    """The raw kernels (weights, not patterns) of one conv layer: RGB tiles for 3 input
    channels, else their mean, each scaled to [0, 1]."""
    w = conv.weight.detach().float().cpu().numpy()[:limit]
    w = w if w.shape[1] == 3 else w.mean(axis=1, keepdims=True)
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    tiles = [_as_image(t) for t in (w - lo) / np.maximum(hi - lo, 1e-12)]
    image_grid(np.stack(tiles), [f"filter {c}" for c in range(len(tiles))], out,
               title=f"{title} raw WEIGHTS of the first conv layer: {len(tiles)} of "
                     f"{conv.weight.shape[0]} kernels {tuple(conv.weight.shape[1:])}, each "
                     f"scaled to [0, 1] (not the patterns they respond to)".strip())


GRADCAM_LABEL = "Grad-CAM (relative importance, 0-1)"


def gradcam_figure(
    images: np.ndarray, cams: np.ndarray, titles: list[str], out: Path, title: str = "",
    wrong: Any = (),
) -> None:
    """Each column: a photo (CHW in [0, 1]) and the photo with its Grad-CAM heatmap
    colour-mapped over it; one shared colour bar. Titles of columns flagged in ``wrong``
    (misclassified) are red."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(max(2.2 * n, 5.0), 5.6), squeeze=False,
                             layout="constrained")
    heat = None
    for i in range(n):
        img = _as_image(images[i])
        gray = "gray" if img.ndim == 2 else None
        axes[0, i].imshow(img, cmap=gray, vmin=0, vmax=1)
        axes[0, i].set_title(titles[i], fontsize=8,
                             color="red" if i < len(wrong) and wrong[i] else "black")
        axes[1, i].imshow(img, cmap=gray, vmin=0, vmax=1)
        heat = axes[1, i].imshow(cams[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("photo", fontsize=8)
    axes[1, 0].set_ylabel("Grad-CAM overlay", fontsize=8)
    if heat is not None:
        bar = fig.colorbar(heat, ax=axes[1, :].tolist(), location="bottom", shrink=0.6,
                           aspect=30)
        bar.set_label(GRADCAM_LABEL, fontsize=8)
    fig.suptitle(title or "Grad-CAM of the predicted class: where the last conv layer finds "
                 "its evidence", fontsize=9)
    _save(fig, out)


def example_indices(y: np.ndarray, n: int = 6) -> list[int]:
    """Up to ``n`` indices of ``y``, as evenly spread over the classes as they allow."""
    y = np.asarray(y)
    per_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    picks: list[int] = []
    for rank in range(max((len(p) for p in per_class), default=0)):
        picks += [int(p[rank]) for p in per_class if rank < len(p)]
        if len(picks) >= n:
            break
    return sorted(picks[:n])


def model_pictures(
    net: Any, x: Any, y: Any, classes: list[str], out_dir: Path, *, filters: int = 8,
    steps: int = 30, size: int | None = None, seed: int = 0, n_layers: int = 3,
) -> list[Path]:
    """The lecture's pictures of a conv net, for the float batch ``x`` (N, C, H, W) in [0, 1]
    with true classes ``y`` (a few images, e.g. :func:`example_indices` of a test set):
    feature_maps.png (first image), first_conv_weights.png, one filter_patterns_<layer>.png
    per :func:`pattern_layers` (``filters`` channels, ``steps`` steps at ``size`` px, default
    the images' size up to 64; ``filters=0`` skips them) and gradcam.png. Returns the files
    written; none for nets without Conv2d layers or inputs that are not images."""
    if getattr(x, "ndim", 0) != 4 or not conv_layers(net) or len(x) == 0:
        return []
    out_dir = Path(out_dir)
    x = x.detach().float().to(_device(net))
    feature_maps(net, x, out_dir / "feature_maps.png")
    conv_weights(conv_layers(net)[0][1], out_dir / "first_conv_weights.png")
    written = [out_dir / "feature_maps.png", out_dir / "first_conv_weights.png"]
    if filters > 0 and steps > 0:
        written += filter_patterns(net, pattern_layers(net, n_layers), out_dir, filters=filters,
                                   steps=steps, size=size or min(x.shape[-1], 64), seed=seed)
    cams, pred, prob = grad_cam(net, x)
    y = np.asarray(y)
    titles = [f"{classes[int(t)]}: predicted {classes[int(p)]}\np={q:.3f}"
              for t, p, q in zip(y, pred, prob, strict=True)]
    gradcam_figure(x.cpu().numpy(), cams, titles, out_dir / "gradcam.png",
                   title=f"Grad-CAM of the predicted class at '{conv_layers(net)[-1][0]}' "
                         f"(the last conv layer); misclassified in red", wrong=pred != y)
    return [*written, out_dir / "gradcam.png"]
