"""Transfer learning: a pretrained conv base (:mod:`nnlab.models.backbones`) under a new head.

:class:`TransferNet` offers both optional hooks of :class:`nnlab.models.registry.NetHooks`:
``base``/``head`` (``net(x) == net.head(net.base(x))``: a frozen base's outputs can be cached)
and ``param_groups`` (fine-tuning the last blocks of the base at their own learning rate from
a given epoch on). The base always runs in inference mode, so pretrained BatchNorm statistics
stay, also when its last blocks are trained. The head: Dense ``hidden`` ReLU -> Dropout ->
Dense to the logits.

When the base actually used differs from the one asked for (the offline fallback), the net's
``resolved_options`` say so; the classifier stores them in the checkpoint, which then rebuilds
the net that was trained.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nnlab.models.backbones import base_output_shape, build_base
from nnlab.models.hooks import Finetune
from nnlab.spec import DataSpec


class TransferNet(nn.Module):
    """``head(base(x))``: ``base`` is frozen except its last ``trainable_blocks`` blocks (its
    children named ``block1``, ``block2``, ...); ``head`` is the new classifier."""

    def __init__(
        self,
        base: nn.Sequential,
        num_outputs: int,
        input_shape: tuple[int, ...],
        *,
        hidden: int,
        dropout: float,
        trainable_blocks: int = 0,
        provenance: dict[str, str] | None = None,
        resolved_options: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.base = base.requires_grad_(False)
        for block in self.blocks[len(self.blocks) - trainable_blocks:] if trainable_blocks else []:
            block.requires_grad_(True)
        features = math.prod(base_output_shape(base, input_shape))
        self.head = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),
        )
        self.provenance = dict(provenance or {})
        self.resolved_options = dict(resolved_options or {})
        self.train()

    @property
    def blocks(self) -> list[nn.Module]:
        return [m for name, m in self.base.named_children() if name.startswith("block")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.base(x))

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        self.base.eval()  # pretrained BatchNorm statistics are kept, also when fine-tuning
        return self

    def param_groups(self, lr: float, finetune: Finetune | None) -> list[dict[str, Any]]:
        """The head at ``lr``; the trainable blocks of the base at ``finetune.backbone_lr``
        (None: lr/10) from epoch ``finetune.unfreeze_epoch`` on (no finetune block: from the
        start), at LR 0 before.

        Every parameter that trains at some point is in the optimizer (and in DDP's reducer)
        from the first step: unfreezing only changes a learning rate, which every rank does at
        the same epoch, so the ranks stay identical.
        """
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters()), "lr": lr,
                                         "name": "head"}]
        trainable = [p for p in self.base.parameters() if p.requires_grad]
        if trainable:
            start = finetune.unfreeze_epoch if finetune else 0
            backbone_lr = finetune.backbone_lr if finetune else None
            backbone_lr = lr / 10 if backbone_lr is None else backbone_lr
            groups.append({
                "params": trainable,
                "name": "backbone",
                "lr": backbone_lr if start <= 0 else 0.0,
                "unfreeze_epoch": start,
                "unfrozen_lr": backbone_lr,
            })
        return groups


def transfer_net(
    spec: DataSpec,
    *,
    backbone: str,
    weights: str,
    source: str,
    pool: str,
    hidden: int,
    dropout: float,
    trainable_blocks: int,
    timeout: float,
) -> TransferNet:
    """The ``vgg16`` model: :func:`build_base` + :class:`TransferNet` (options: the registry's
    ``vgg16`` builder)."""
    if spec.kind != "image":
        raise ValueError(f"an ImageNet backbone needs RGB images, got {spec.kind} data")
    base, provenance = build_base(backbone, pool=pool, source=source, weights=weights,
                                  timeout=timeout, input_shape=spec.input_shape)
    used = provenance["backbone"]
    return TransferNet(
        base,
        spec.num_outputs,
        spec.input_shape,
        hidden=hidden,
        dropout=dropout,
        trainable_blocks=trainable_blocks,
        provenance=provenance,
        resolved_options={"backbone": used} if used != backbone else None,
    )
