"""A pretrained conv base (:mod:`nnlab.models.backbones`) under a new head."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nnlab.models.backbones import base_output_shape, build_base


class TransferNet(nn.Module):
    """``head(base(x))``, the base frozen but for its last ``trainable_blocks`` ``block<i>``
    children and always in eval mode (its BatchNorm statistics stay). Options as the registry's
    ``vgg16`` checks them; ``resolved_options``: the backbone used if another (the fallback)."""

    def __init__(self, spec, *, backbone, hidden, dropout, trainable_blocks, **base_options):
        super().__init__()
        base, self.provenance = build_base(backbone, input_shape=spec.input_shape, **base_options)
        used = self.provenance["backbone"]
        self.resolved_options = {"backbone": used} if used != backbone else {}
        self.base = base  # frozen, in eval mode
        self.blocks = [m for name, m in base.named_children() if name.startswith("block")]
        for block in self.blocks[len(self.blocks) - trainable_blocks :]:
            block.requires_grad_(True)
        self.head = nn.Sequential(
            nn.Linear(math.prod(base_output_shape(base, spec.input_shape)), hidden),
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
        """The head at ``lr``; the trainable blocks at ``finetune.backbone_lr`` (None: lr/10)
        from epoch ``finetune.unfreeze_epoch`` on, at LR 0 before: unlike Lightning's
        BackboneFinetuning, the optimizer and DDP's reducer hold them from the first step."""
        groups = [{"params": list(self.head.parameters()), "lr": lr, "name": "head"}]
        trainable = [p for p in self.base.parameters() if p.requires_grad]
        if trainable:
            start = finetune.unfreeze_epoch if finetune else 0
            tuned_lr = getattr(finetune, "backbone_lr", None) or lr / 10
            group = {"params": trainable, "name": "backbone", "unfreeze_epoch": start}
            groups.append({**group, "lr": tuned_lr if start <= 0 else 0.0, "unfrozen_lr": tuned_lr})
        return groups
