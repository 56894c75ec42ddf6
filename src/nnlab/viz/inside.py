"""What a conv net sees: activations, first kernels, filter patterns, Grad-CAM; net unchanged."""

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from nnlab import paths
from nnlab.viz import image_grid

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish)


def conv_names(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]


@contextlib.contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """The net in eval mode, each module's own mode restored afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    try:
        yield net.eval()
    finally:
        for m, mode in modes:
            m.training = mode


def activations(net: nn.Module, convs: list[str]) -> Callable:
    """x -> [(output, activation)] of each conv (or of its BatchNorm), Keras-like: the activation
    registered next, applied to a copy; the net is run as far as needed."""
    modules = dict(net.named_modules())
    names, steps = list(modules), []
    for conv in convs:
        after = names[names.index(conv) + 1 :][:2]
        pre = after.pop(0) if after and isinstance(modules[after[0]], nn.BatchNorm2d) else conv
        activated = after and isinstance(modules[after[0]], ACTIVATIONS)
        steps.append((pre, modules[after[0]]) if activated else (conv, nn.Identity()))
    extract = create_feature_extractor(  # a Conv2d subclass with its own forward: one node
        net, list(dict.fromkeys(p for p, _ in steps)), tracer_kwargs={"leaf_modules": [nn.Conv2d]}
    )

    def run(x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = extract(x)  # the copy: an in-place activation would overwrite its input
        return [(out[pre], act(out[pre].clone())) for pre, act in steps]

    return run


def pattern_layers(net: nn.Module, n: int = 3) -> list[tuple[str, str]]:
    """(label, conv) of ``n`` convs spread over the depth, as Keras: block5_conv3, else conv1..."""
    convs = conv_names(net)
    blocks = [
        (m.group(2), [c for c in convs if c.startswith(f"{name}.")])
        for name, _ in net.named_modules()
        if (m := re.search(r"(^|\.)(block\d+)$", name))
    ]
    candidates = [(f"{b}_conv{len(cs)}", cs[-1]) for b, cs in blocks if cs] or [
        (f"conv{i}", c) for i, c in enumerate(convs, 1)
    ]
    picks = np.linspace(0, len(candidates) - 1, max(n, 1)).round().astype(int)
    return [candidates[i] for i in np.unique(picks)] if candidates else []


def channel_means(act: torch.Tensor) -> torch.Tensor:
    """(k,): mean of channel i of sample i, without a 2-pixel border when the map is large."""
    if min(act.shape[-2:]) >= 8:
        act = act[..., 2:-2, 2:-2]
    return act.diagonal(dim1=0, dim2=1).float().mean(dim=(0, 1))


def ascend_filters(net: nn.Module, conv: str, *, filters=8, steps=30, size=64, seed=0):
    """(k, C, size, size) images in [0, 1], image i maximising channel i's mean after ``conv``:
    normalised ascent from grey noise, randomly shifted (no pixel lock-in); 1% pre-activation
    mean wakes a silent filter."""
    gen = torch.Generator().manual_seed(seed)
    channels = net.get_submodule(conv_names(net)[0]).in_channels
    img = (0.5 + 0.02 * torch.randn(filters, channels, size, size, generator=gen)).clamp(0, 1)
    img = img.to(next(net.parameters()).device)
    shifts = torch.randint(-2, 3, (steps, 2), generator=gen)
    shifts[steps - steps // 3 :] = 0  # the last third unshifted: ends on the filter's own mean
    with evaluating(net), torch.enable_grad():
        extract = activations(net, [conv])
        for dy, dx in shifts.tolist():
            ((pre, act),) = extract(torch.roll(img.requires_grad_(True), (dy, dx), dims=(2, 3)))
            k = min(filters, act.shape[1])
            score = channel_means(act[:k]) + 0.01 * channel_means(pre[:k])
            (grad,) = torch.autograd.grad(score.sum(), img)
            grad = grad[:k] / grad[:k].pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().add(1e-8)
            img = (img.detach()[:k] + 0.02 * grad).clamp_(0, 1)
    return img.detach()


def filter_patterns(net, layers, out_dir: Path, *, steps=30, seed=0, **ascent) -> list[Path]:
    """``filter_patterns_<label>.png`` for each (label, conv): :func:`ascend_filters`."""
    convs = conv_names(net)
    written = []
    for label, conv in layers:
        found = ascend_filters(net, conv, steps=steps, seed=seed, **ascent).cpu()
        shown = (F.layer_norm(found, found.shape[1:]) * 0.15 + 0.5).clamp(0, 1)
        title = (
            f"{label} ('{conv}', conv layer {convs.index(conv) + 1} of {len(convs)}): inputs "
            f"maximising each channel's mean, {steps} ascent steps from grey noise (seed {seed})"
        )
        labels = [f"channel {c}" for c in range(len(shown))]
        written.append(Path(out_dir) / paths.FILTER_PATTERNS_PNG.format(label))
        image_grid(shown, labels, written[-1], cols=min(8, len(shown)), title=title)
    return written


def feature_maps(net: nn.Module, x: torch.Tensor, out: Path, layers=3, per_layer=16) -> None:
    """``x[0]`` over the activations of the first conv layers, ``per_layer`` channels each."""
    convs = conv_names(net)[:layers]
    with evaluating(net), torch.no_grad():
        maps = [act[0, :per_layer].float().cpu() for _, act in activations(net, convs)(x[:1])]
    blank = torch.ones(per_layer, 3, *x.shape[-2:])  # each layer on a row of its own
    tiles, labels = [x[:1].cpu().expand(-1, 3, -1, -1), blank[1:]], ["input"]
    for conv, m in zip(convs, maps, strict=True):
        low, high = m.amin(dim=(1, 2), keepdim=True), m.amax(dim=(1, 2), keepdim=True)
        rgb = colormaps["viridis"](((m - low) / (high - low).clamp_min(1e-12)).numpy())[..., :3]
        rgb = F.interpolate(torch.from_numpy(rgb).permute(0, 3, 1, 2).float(), x.shape[-2:])
        tiles += [rgb, blank[len(m) :]]
        labels += [""] * (-len(labels) % per_layer) + [f"{conv} c0"]
        labels += [f"c{c}" for c in range(1, len(m))]
    title = (
        f"activations of the first conv layers for one test image (up to {per_layer} channels "
        "each, each scaled to its own range)"
    )
    image_grid(torch.cat(tiles), labels, out, cols=per_layer, title=title)


def grad_cam(net: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM of the predicted class at the last conv: (N, H, W) in [0, 1], classes, probs."""

    def logits(inp: torch.Tensor) -> torch.Tensor:  # one logit l as (-l/2, l/2): softmax is
        out = net(inp).float()  # (1 - sigmoid(l), sigmoid(l)), the evidence for "0" is -l
        return torch.cat([-out, out], 1) / 2 if out.shape[-1] == 1 else out

    with evaluating(net):
        with torch.no_grad():
            probs = logits(x).softmax(-1)
        pred = probs.argmax(-1)
        layer = net.get_submodule(conv_names(net)[-1])
        cam = LayerGradCam(logits, layer).attribute(x, target=pred, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam.detach().float(), x.shape[-2:], "bilinear")[:, 0]
    cam = cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return cam.cpu().numpy(), pred.cpu().numpy(), probs.gather(1, pred[:, None])[:, 0].numpy()


def gradcam_figure(net: nn.Module, x: torch.Tensor, y: np.ndarray, classes: list[str]) -> Figure:
    """Each column: a photo (title red where misclassified), below it under its Grad-CAM."""
    cams, pred, prob = grad_cam(net, x)
    fig = Figure(figsize=(max(2.2 * len(x), 5.0), 5.6), layout="constrained")
    axes = fig.subplots(2, len(x), squeeze=False)
    for i, img in enumerate(x.cpu().permute(0, 2, 3, 1).clamp(0, 1)):
        for ax in axes[:, i]:
            ax.imshow(img.squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)  # RGB or grey
            ax.set(xticks=[], yticks=[])
        axes[0, i].set_title(
            f"{classes[y[i]]}: predicted {classes[pred[i]]}\np={prob[i]:.3f}",
            fontsize=8,
            color="black" if pred[i] == y[i] else "red",
        )
        heat = axes[1, i].imshow(cams[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[0, 0].set_ylabel("photo", fontsize=8)
    axes[1, 0].set_ylabel("Grad-CAM overlay", fontsize=8)
    bar = fig.colorbar(heat, ax=axes[1, :].tolist(), location="bottom", shrink=0.6, aspect=30)
    bar.set_label("Grad-CAM (relative importance, 0-1)", fontsize=8)
    title = f"Grad-CAM of the predicted class at '{conv_names(net)[-1]}' (the last conv layer)"
    fig.suptitle(f"{title}; misclassified in red", fontsize=9)
    return fig


def model_pictures(net: nn.Module, x, y, classes, out_dir: Path, *, filters=8, steps=30, seed=0):
    """The pictures (files written) of a conv net for images x in [0, 1] of classes y; none if
    no Conv2d or no images; ``filters=0``: no filter patterns."""
    if getattr(x, "ndim", 0) != 4 or len(x) == 0 or not conv_names(net):
        return []
    x = x.detach().float().to(next(net.parameters()).device)
    written = [Path(out_dir) / name for name in (paths.FEATURE_MAPS_PNG, paths.CONV_WEIGHTS_PNG)]
    feature_maps(net, x, written[0])
    weight = net.get_submodule(conv_names(net)[0]).weight.detach().float().cpu()
    tiles = weight[:32] if weight.shape[1] == 3 else weight[:32].mean(1, keepdim=True)
    title = (
        f"raw WEIGHTS of the first conv layer: {len(tiles)} of {len(weight)} kernels "
        f"{tuple(weight.shape[1:])}, each scaled to [0, 1] (not what they respond to)"
    )
    labels = [f"filter {c}" for c in range(len(tiles))]
    image_grid(tiles, labels, written[1], scale_each=True, title=title)
    if filters > 0 and steps > 0:
        ascent = {"filters": filters, "steps": steps, "size": min(x.shape[-1], 64), "seed": seed}
        written += filter_patterns(net, pattern_layers(net), out_dir, **ascent)
    written.append(Path(out_dir) / paths.GRADCAM_PNG)
    gradcam_figure(net, x, np.asarray(y), classes).savefig(written[-1], dpi=100)
    return written
