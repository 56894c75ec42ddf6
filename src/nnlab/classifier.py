"""The one LightningModule: any registered net as a classifier (two classes: one logit and BCE),
rebuilt from its checkpoint alone; every number a DDP-reduced torchmetrics object (``val/acc``)."""

from __future__ import annotations

import ctypes
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import Accuracy, MulticlassConfusionMatrix

from nnlab.config import FinetuneConfig, LoaderConfig
from nnlab.files import reading_checkpoint
from nnlab.models.registry import build_model, loading_checkpoint
from nnlab.spec import spec_from_meta
from nnlab.threads import ThreadSizer

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def skip_absent_nvml() -> bool:
    """Drop Lightning's NVML-based CUDA check where NVML is absent (True if so): a dlopen each."""
    try:
        if os.environ.get(NVML_CHECK) == "1":
            ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[NVML_CHECK]
        return True
    return False


skip_absent_nvml()  # right after Lightning's import set it

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, C) class probabilities from (N, C) logits or (N, 1) binary ones (z: logits [0, z])."""
    if logits.shape[-1] == 1:
        logits = F.pad(logits, (1, 0))
    return torch.softmax(logits.float(), dim=-1)


def scale_inputs(batch: dict[str, torch.Tensor], channels_last: bool = False) -> tuple:
    """Model inputs from a batch: uint8 images in [0, 1], features as float32, ids with lengths."""
    x = batch["x"]
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    elif x.is_floating_point():
        x = x.float()
    return (x, batch["len"]) if "len" in batch else (x,)


class Classifier(L.LightningModule):
    def __init__(self, *, model: str, meta: dict, model_options: dict, **hparams: Any):
        """``hparams``: the optimizer settings, experiment name and params_hash (checkpointed)."""
        super().__init__()
        self.save_hyperparameters(logger=False)  # params reach MLflow once, from train
        self.spec = spec_from_meta(meta)
        self.net = build_model(model, self.spec, model_options)
        # a backbone that fell back to another one: the checkpoint rebuilds the one trained
        if getattr(self.net, "resolved_options", None):
            self.hparams.model_options = {**model_options, **self.net.resolved_options}
        self.binary = self.spec.num_outputs == 1
        k = self.spec.num_classes
        task = {"task": "binary"} if self.binary else {"task": "multiclass", "num_classes": k}
        # no per-call input checks (labels and predictions are made here); a NaN loss shows
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_acc", Accuracy(**task, validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self.val_acc_best = MaxMetric()
        self.test_confusion = MulticlassConfusionMatrix(k)
        self.test_probs: list[torch.Tensor] = []  # of the one test run (evaluate's)
        if self.hparams.channels_last and self.spec.kind == "image":
            self.net = self.net.to(memory_format=torch.channels_last)

    # meta["assets"] (a vocabulary) ride in the checkpoint into spec.extra: it reads raw input
    def setup(self, stage: str) -> None:
        names = self.hparams.meta.get("assets", [])
        dm = getattr(self.trainer, "datamodule", None)
        if names and "assets" not in self.spec.extra and dm is not None:
            self.on_load_checkpoint({"nnlab_assets": dm.assets(names)})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nnlab_assets"] = self.spec.extra.get("assets", {})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if assets := checkpoint.get("nnlab_assets"):
            self.spec = replace(self.spec, extra={**self.spec.extra, "assets": dict(assets)})

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(*inputs)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(*scale_inputs(batch, self.hparams.channels_last))

    def predicted_class(self, logits: torch.Tensor) -> torch.Tensor:
        """The argmax of :func:`probabilities`, without computing them."""
        return (logits[:, 0] > 0).long() if self.binary else logits.argmax(-1)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple:
        logits, y = self.logits(batch), batch["y"]
        if self.binary:
            loss = F.binary_cross_entropy_with_logits(logits.squeeze(-1).float(), y.float())
        else:
            loss = F.cross_entropy(logits.float(), y)
        pred = self.predicted_class(logits.detach())
        getattr(self, f"{stage}_acc").update(pred, y)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(y))
        return loss, logits, pred

    def _log_epoch(self, stage: str) -> torch.Tensor:
        """Logs the stage's loss and accuracy (reduced over ranks already) and resets them."""
        acc, loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        value = acc.compute()
        self.log(f"{stage}/loss", loss.compute(), prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", value, prog_bar=stage != "test", sync_dist=True)
        loss.reset()
        acc.reset()
        return value

    def lr_factor(self) -> float:
        """The schedule's multiple of each group's LR at this optimizer step: a linear warmup
        over ``warmup_epochs``, then 1 (constant) or a cosine decay to 0 at the last step."""
        hp, total, step = self.hparams, self.total_steps, self.global_step
        warmup = hp.get("warmup_epochs", 0) * total / self.trainer.max_epochs
        if step < warmup:
            return (step + 1) / warmup
        if hp.get("lr_schedule", "constant") == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1.0, total - warmup))))

    def on_train_start(self) -> None:
        self.total_steps = max(1, int(self.trainer.estimated_stepping_batches))  # once per fit

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # from the step alone, so a resumed run continues the schedule; a group with
        # "unfreeze_epoch" (TransferNet.param_groups) has LR 0 before that epoch
        factor = self.lr_factor()
        for group in self.optimizers().param_groups:
            frozen = self.current_epoch < group.get("unfreeze_epoch", 0)
            group["lr"] = 0.0 if frozen else group["peak_lr"] * factor

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def on_train_epoch_end(self) -> None:
        if self.train_loss.update_count:  # no validation ran this epoch
            self._log_epoch("train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        acc = self._log_epoch("val")
        if self.trainer.sanity_checking:
            return
        # the epoch's training metrics with it: all are in place when checkpoints record it
        self.on_train_epoch_end()
        self.val_acc_best.update(acc)
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, logits, pred = self._step(batch, "test")
        self.test_confusion.update(pred, batch["y"])
        self.test_probs.append(probabilities(logits).cpu())

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return probabilities(self.logits(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        kwargs = {"lr": hp.lr, "weight_decay": hp.weight_decay}
        if hp.optimizer in ("sgd", "rmsprop"):
            kwargs["momentum"] = hp.momentum
        if hasattr(self.net, "param_groups"):  # a net that tunes its own groups (TransferNet)
            ft = FinetuneConfig(**hp.finetune) if hp.finetune else None
            groups = self.net.param_groups(hp.lr, ft)
        else:
            groups = [{"params": [p for p in self.net.parameters() if p.requires_grad]}]
        for group in groups:
            group["peak_lr"] = group.get("lr", hp.lr)
        return getattr(torch.optim, OPTIMIZERS[hp.optimizer])(groups, **kwargs)


def count_parameters(net: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    params = list(net.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def inference_trainer(params: Any = None) -> L.Trainer:
    """The training's accelerator and precision on ONE device (DDP would pad the test set)."""
    kwargs = params.trainer.kwargs() if params is not None else {}
    loader = params.loader if params is not None else LoaderConfig()
    return L.Trainer(
        callbacks=[ThreadSizer(loader.threads, loader.num_workers)],
        accelerator=kwargs.get("accelerator", "auto"),
        devices=1,
        precision=kwargs.get("precision", "32-true"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )


def load_classifier(checkpoint: Path) -> Classifier:
    """The model a checkpoint holds, rebuilt from its hyperparameters (nothing fetched)."""
    if not checkpoint.exists():  # a FIFO or a device: refused by reading_checkpoint, naming it
        raise FileNotFoundError(
            f"{checkpoint}: no checkpoint; run `dvc repro train@{checkpoint.parent.name}` first"
        )
    with loading_checkpoint(), reading_checkpoint(checkpoint):  # tensors and plain data only
        model = Classifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    return model.eval()
