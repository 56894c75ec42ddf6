"""torchvision's VGG16 conv base, built whole with its weights, then cut after each max-pool."""

from __future__ import annotations

import itertools
import socket
from typing import Any

import torch
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models import vgg16 as tv_vgg16

from nnlab.log import DownloadError

WEIGHTS = VGG16_Weights.IMAGENET1K_V1
NORMALIZE = (tuple(WEIGHTS.transforms().mean), tuple(WEIGHTS.transforms().std))
BLOCK_ENDS = (5, 10, 17, 24, 31)  # .features indices just after each max-pool


def _sliced(features: nn.Sequential) -> list[nn.Sequential]:
    return [nn.Sequential(*features[a:b]) for a, b in itertools.pairwise((0, *BLOCK_ENDS))]


def blocks(state: dict[str, torch.Tensor] | None = None) -> list[nn.Sequential]:
    """Random-init blocks, or a state dict's: a torchvision VGG16's (classifier ignored) or bare."""
    with torch.device("meta"):  # the classifier's 120M parameters are never allocated
        features = tv_vgg16().features
    features.to_empty(device="cpu")
    for conv in features:
        if isinstance(conv, nn.Conv2d):  # as torchvision's VGG initialises them
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
    if state is not None:
        kept = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        features.load_state_dict({k.removeprefix("features."): v for k, v in kept.items()})
    return _sliced(features)


def pretrained(timeout: float) -> dict[str, Any]:
    """torchvision's ImageNet blocks (hash-checked, cached in TORCH_HOME), or a DownloadError."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # per network operation of the download
    try:
        net = tv_vgg16(weights=WEIGHTS, progress=False)
    except (OSError, RuntimeError) as err:  # URLError, timeouts; hash mismatch, bad file
        raise DownloadError(f"{WEIGHTS.url}: {err}") from None
    finally:
        socket.setdefaulttimeout(old)
    return {"blocks": _sliced(net.features), "weights": "ImageNet (torchvision IMAGENET1K_V1)"}
