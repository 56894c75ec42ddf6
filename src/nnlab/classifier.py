"""The one LightningModule: wraps any registered net for binary or multi-class classification.

Two classes -> one logit, BCE-with-logits, sigmoid; more -> one logit per class, cross-entropy,
softmax. The net is built from the registry inside ``__init__`` from saved hyperparameters, so
a checkpoint alone is enough to rebuild the model (``Classifier.load_from_checkpoint``).
Metrics are torchmetrics objects (reduced across DDP ranks); losses are logged with
``sync_dist=True``. Names are the same in Lightning, MLflow and metrics.json.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import Accuracy

from nnlab.models.registry import build_model
from nnlab.spec import spec_from_meta

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, C) class probabilities from (N, 1) binary or (N, C) multi-class logits."""
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], dim=-1)
    return torch.softmax(logits.float(), dim=-1)


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: str,
        meta: dict[str, Any],
        model_options: dict[str, Any] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        channels_last: bool = False,
        finetune: dict[str, Any] | None = None,
        experiment: str = "",
        params_hash: str = "",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.spec = spec_from_meta(meta)
        self.net = build_model(model, self.spec, model_options)
        # Options the builder resolved itself (a pretrained backbone that fell back to another
        # one) go into the checkpoint, so that loading it rebuilds the net that was trained.
        if getattr(self.net, "resolved_options", None):
            self.hparams.model_options = {**(model_options or {}), **self.net.resolved_options}
        self.binary = self.spec.num_outputs == 1
        task = {"task": "binary"} if self.binary else {
            "task": "multiclass", "num_classes": self.spec.num_classes
        }
        self.train_acc = Accuracy(**task)
        self.val_acc = Accuracy(**task)
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.val_acc_best = MaxMetric()
        if channels_last and self.spec.kind == "image":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.assets: dict[str, Any] = {}

    # ----------------------------------------------------------------------- assets
    # Files the split stage lists in meta["assets"] (e.g. a text vocabulary) travel inside
    # the checkpoint, not in hparams (which go to MLflow params): a checkpoint alone then
    # predicts on raw input, and they reach the model's spec as spec.extra["assets"].
    def setup(self, stage: str) -> None:
        names = self.hparams.meta.get("assets", [])
        dm = getattr(self.trainer, "datamodule", None)
        if names and not self.assets and dm is not None:
            from nnlab.data.prepare import split_dir
            from nnlab.files import read_json

            folder = split_dir(dm.dataset_name, dm.root)
            self.set_assets({name: read_json(folder / name) for name in names})

    def set_assets(self, assets: dict[str, Any]) -> None:
        from dataclasses import replace

        self.assets = dict(assets)
        self.spec = replace(self.spec, extra={**self.spec.extra, "assets": self.assets})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.assets:
            checkpoint["nnlab_assets"] = self.assets

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get("nnlab_assets"):
            self.set_assets(checkpoint["nnlab_assets"])

    # ----------------------------------------------------------------------- forward
    def inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Model inputs from a batch: uint8 images are scaled to [0, 1] here, on the device."""
        x = batch["x"]
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
            if self.hparams.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        return (x, batch["len"]) if "len" in batch else (x,)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1).float(), y.float())
        return F.cross_entropy(logits.float(), y)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return probabilities(logits).argmax(-1)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if "features" in batch:  # the net's frozen base already ran (nnlab.features)
            logits = self.net.head(batch["features"].float())
        else:
            logits = self(*self.inputs(batch))
        return self.loss(logits, batch["y"]), logits

    # ----------------------------------------------------------------------- loops
    def on_train_start(self) -> None:
        self.val_acc_best.reset()

    def on_train_epoch_start(self) -> None:
        # A parameter group with "unfreeze_epoch" trains at LR 0 before that epoch and at
        # "unfrozen_lr" from it on: its parameters stay in the optimizer (and in DDP's reducer)
        # all along, and every rank switches at the same epoch.
        for group in self.optimizers().param_groups:
            if "unfreeze_epoch" in group:
                unfrozen = self.current_epoch >= group["unfreeze_epoch"]
                group["lr"] = group["unfrozen_lr"] if unfrozen else 0.0

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits = self._step(batch)
        n = len(batch["y"])
        self.train_loss.update(loss.detach(), weight=n)
        self.train_acc.update(self.predictions(logits.detach()), batch["y"])
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _log_train_epoch(self) -> None:
        if self.train_loss.update_count == 0:
            return
        self.log("train/loss", self.train_loss.compute())
        self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        self.log("train/lr", max(g["lr"] for g in self.optimizers().param_groups))
        self.train_loss.reset()
        self.train_acc.reset()

    def on_train_epoch_end(self) -> None:
        self._log_train_epoch()  # only when no validation ran this epoch

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.val_loss.update(loss, weight=len(batch["y"]))
        self.val_acc.update(self.predictions(logits), batch["y"])

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.log("val/acc", acc, prog_bar=True)
        self.val_loss.reset()
        self.val_acc.reset()
        if self.trainer.sanity_checking:
            return
        # Validation ends the training epoch: log the epoch's training metrics with it, so
        # every per-epoch metric is in place when checkpoints and History record the epoch.
        self._log_train_epoch()
        self.val_acc_best.update(acc)
        self.log("val/acc_best", self.val_acc_best.compute())

    # ----------------------------------------------------------------------- optimizer
    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer; a net may define its own ``param_groups``."""
        if hasattr(self.net, "param_groups"):
            return self.net.param_groups(self.hparams.lr, self.hparams.finetune or {})
        return [{"params": [p for p in self.net.parameters() if p.requires_grad]}]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        kwargs: dict[str, Any] = {"lr": hp.lr, "weight_decay": hp.weight_decay}
        if hp.optimizer in ("sgd", "rmsprop"):
            kwargs["momentum"] = hp.momentum
        return OPTIMIZERS[hp.optimizer](self.param_groups(), **kwargs)


def count_parameters(net: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return total, trainable
