"""torchvision's VGG16 conv base (13 conv layers, 14,714,688 parameters) as five blocks.

The whole torchvision model is built first, with its weights (the weights API, a local file or
random init), and only then is ``.features`` cut after each max-pool: no key remapping.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models import vgg16 as tv_vgg16

from nnlab.log import DownloadError
from nnlab.models.backbones.state import load_checked

WEIGHTS = VGG16_Weights.IMAGENET1K_V1
_PRESET = WEIGHTS.transforms()
NORMALIZE = (tuple(_PRESET.mean), tuple(_PRESET.std))  # what the ImageNet weights expect
BLOCK_ENDS = (5, 10, 17, 24, 31)  # .features indices just after each max-pool


def _sliced(net: nn.Module) -> list[nn.Sequential]:
    starts = (0, *BLOCK_ENDS[:-1])
    return [nn.Sequential(*net.features[a:b]) for a, b in zip(starts, BLOCK_ENDS, strict=True)]


def blocks(state: dict[str, torch.Tensor] | None = None, where: str = "") -> list[nn.Sequential]:
    """Random-init blocks, or those of a local state dict: a whole torchvision VGG16
    (``features.*``; its classifier is ignored) or the conv base alone (``0.weight``, ...)."""
    net = tv_vgg16(weights=None)
    if state is not None:
        conv = {k.removeprefix("features."): v for k, v in state.items()
                if not k.startswith("classifier.")}
        load_checked(net.features, conv, where)
    return _sliced(net)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def pretrained(timeout: float) -> dict[str, Any]:
    """The ImageNet blocks through torchvision's weights API (torch hub cache, ``TORCH_HOME``;
    a download is hash-checked). Any network or hash failure is a ``DownloadError``."""
    try:
        with _socket_timeout(timeout):
            net = tv_vgg16(weights=WEIGHTS, progress=False)
    except (OSError, RuntimeError) as err:  # URLError, timeouts; hash mismatch, bad file
        raise DownloadError(f"{WEIGHTS.url}: {err}") from None
    return {"blocks": _sliced(net), "backbone": "vgg16",
            "weights": "ImageNet (torchvision IMAGENET1K_V1)"}
