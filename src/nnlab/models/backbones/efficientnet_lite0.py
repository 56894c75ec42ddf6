"""EfficientNet-Lite0's conv base (ReLU6, TF 'SAME' padding, no squeeze-excitation), VGG16's
offline stand-in: its package ships only a state dict, so the architecture is here, named alike."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

NORMALIZE = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # the weights expect inputs in [-1, 1]
# (repeats, kernel, stride, expand, in, out) of the seven stages of MBConvs
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BLOCK_ENDS = (1, 3, 5, 11, 16)  # the MBConvs that end each block (strides 2, 4, 8, 16, 32)


class SameConv(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow 'SAME' padding (any odd pixel at the bottom/right)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k, _), (s, _), pads = self.kernel_size, self.stride, []  # square
        for size in x.shape[:-3:-1]:  # width, then height
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project (+ x)."""

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


def _conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv=conv, bn=bn, act=nn.ReLU6()))


def blocks(state: dict[str, torch.Tensor] | None = None) -> list[nn.Sequential]:
    """Random-init blocks, or a state dict's in the package's layout (less "_" and its "_fc")."""
    net = nn.ModuleDict(
        {
            "conv_stem": SameConv(3, 32, 3, 2),
            "bn0": _bn(32),
            "blocks": nn.ModuleList(
                MBConv(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, expand)
                for repeats, k, stride, expand, cin, cout in STAGES
                for r in range(repeats)
            ),
            "conv_head": SameConv(320, 1280, 1),
            "bn1": _bn(1280),
        }
    )
    if state is not None:
        renamed = {".".join(p.lstrip("_") for p in k.split(".")): v for k, v in state.items()}
        net.load_state_dict({k: v for k, v in renamed.items() if not k.startswith("fc.")})
    groups = [list(net["blocks"][a:b]) for a, b in itertools.pairwise((0, *BLOCK_ENDS))]
    groups[0].insert(0, _conv_bn(net["conv_stem"], net["bn0"]))
    groups[-1].append(_conv_bn(net["conv_head"], net["bn1"]))
    return [nn.Sequential(*group) for group in groups]
