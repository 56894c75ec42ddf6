"""Training: builds the Trainer from params and fits one experiment.

Outputs (``models/<experiment>/``, a persistent DVC out so a killed run can resume):
``best.ckpt`` (by ``val/acc``), ``last.ckpt``, ``history.csv`` (one row per epoch),
``summary.txt`` and ``run.json`` (the MLflow receipt). Under DDP only global rank 0 writes
files or MLflow records; Lightning launches the other ranks from the same command, and they
read params.yaml themselves.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from nnlab import tracking
from nnlab.classifier import Classifier
from nnlab.config import Params
from nnlab.data.datamodule import ArrayDataModule
from nnlab.data.prepare import split_dir
from nnlab.data.sources import info
from nnlab.features import training_features
from nnlab.summary import summary_text

MODEL_ROOT = Path("models")
# run.json and summary.txt are written before the first checkpoint: expected, not a problem
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
HISTORY_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc", "train/lr")


class History(Callback):
    """Per-epoch metrics, kept in the checkpoint so a resumed run keeps its curves."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def _record(self, trainer: L.Trainer) -> None:
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        for key in HISTORY_KEYS:
            if key in trainer.callback_metrics:
                row[key] = float(trainer.callback_metrics[key])
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs before ModelCheckpoint's hook (Lightning orders checkpoint callbacks last)
        if not trainer.sanity_checking:
            self._record(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not any(r["epoch"] == trainer.current_epoch for r in self.rows):
            self._record(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))

    def write(self, path: Path) -> None:
        from nnlab.files import atomic_file

        with atomic_file(path, "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=["epoch", *HISTORY_KEYS], restval="")
            writer.writeheader()
            for row in sorted(self.rows, key=lambda r: r["epoch"]):
                writer.writerow(row)


def is_global_zero_env() -> bool:
    """Rank 0 before the Trainer exists (DDP children get RANK/LOCAL_RANK/NODE_RANK)."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def resumable_checkpoint(model_dir: Path, phash: str) -> Path | None:
    """``last.ckpt`` of an interrupted run with the same params, else None."""
    last = model_dir / "last.ckpt"
    if not last.is_file() or ((model_dir / tracking.RECEIPT).is_file() and _finished(model_dir)):
        return None
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception:  # an unreadable checkpoint is not worth resuming
        return None
    if ckpt.get("hyper_parameters", {}).get("params_hash") != phash:
        return None
    return last


def _finished(model_dir: Path) -> bool:
    try:
        return tracking.read_receipt(model_dir).get("status") == "FINISHED"
    except (FileNotFoundError, ValueError):
        return False


def build_trainer(params: Params, max_epochs: int, **kwargs: Any) -> L.Trainer:
    t = params.trainer
    extra: dict[str, Any] = {}
    if t.limit_batches is not None:
        extra = {"limit_train_batches": t.limit_batches, "limit_val_batches": t.limit_batches}
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        max_epochs=max_epochs,
        **extra,
        **kwargs,
    )


def train(params: Params, name: str, root: Path = Path(".")) -> dict[str, Any]:
    """Fit one experiment; returns the run receipt (on rank 0)."""
    exp = params.experiment(name)
    root = Path(root)
    split_dir(exp.dataset, root)  # says which stage to run if the data is missing
    model_dir = root / MODEL_ROOT / name
    flat = params.flat(name)
    phash = tracking.params_hash(flat)

    L.seed_everything(params.seed, workers=True)
    dm = ArrayDataModule(exp.dataset, exp, params.trainer, params.seed, root)
    model = Classifier(
        model=exp.model,
        meta=dm.meta,
        model_options=exp.model_options,
        optimizer=exp.optimizer,
        lr=exp.lr,
        weight_decay=exp.weight_decay,
        momentum=exp.momentum,
        channels_last=params.trainer.channels_last,
        finetune=exp.finetune,
        experiment=name,
        params_hash=phash,
    )
    if exp.init_from:
        init_weights(model, root / MODEL_ROOT / exp.init_from / "best.ckpt")
    features = training_features(name, exp, model.net, root)
    if features is not None:  # the frozen base already ran once: the head trains on its outputs
        dm.features_dir = features
        info(f"train@{name}: training the head on the frozen base's cached features {features}")
    pretrained = dict(getattr(model.net, "provenance", {}))  # a pretrained base: which weights

    resume = resumable_checkpoint(model_dir, phash)
    run_id = None
    if resume is not None:
        run_id = _receipt_or_empty(model_dir).get("run_id")
        info(f"train@{name}: resuming from {resume}")
    elif is_global_zero_env() and model_dir.exists():
        shutil.rmtree(model_dir)
    if is_global_zero_env():
        model_dir.mkdir(parents=True, exist_ok=True)

    source = dm.meta.get("source", "unknown")
    tags = tracking.run_tags(name, exp.dataset, source, root)
    tags.update({f"pretrained.{key}": value for key, value in pretrained.items()})
    logger = tracking.make_logger(name, exp.dataset, tags, root, run_id)
    history = History()
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=model_dir,
            filename="best",
            monitor="val/acc",
            mode="max",
            save_last=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        history,
    ]
    if exp.patience is not None:
        callbacks.append(EarlyStopping(monitor="val/acc", mode="max", patience=exp.patience))
    if params.trainer.progress_bar:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    trainer = build_trainer(
        params,
        exp.epochs,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=params.trainer.progress_bar,
        enable_model_summary=False,
        default_root_dir=str(model_dir),
    )
    receipt: dict[str, Any] = {}
    if trainer.is_global_zero:
        receipt = {
            "experiment": name,
            "dataset": exp.dataset,
            "run_id": logger.run_id,
            "experiment_id": logger.experiment_id,
            "tracking_uri": tracking.tracking_uri(root),
            "params_hash": phash,
            "data_source": source,
            "status": "RUNNING",
        }
        if pretrained:
            receipt["pretrained"] = pretrained
        if features is not None:
            receipt["trained_on"] = str(features.relative_to(root))
        tracking.write_receipt(model_dir, receipt)
        logger.log_hyperparams(flat)
        (model_dir / "summary.txt").write_text(summary_text(model.net, model.spec, name) + "\n")

    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm, ckpt_path=str(resume) if resume else None)
    seconds = time.perf_counter() - t0
    if trainer.interrupted:
        info(f"train@{name}: interrupted; {model_dir / 'last.ckpt'} kept, rerun to resume")
        sys.exit(130)
    if not trainer.is_global_zero:
        return {}

    history.write(model_dir / "history.csv")
    receipt.update(
        status="FINISHED",
        epochs_run=trainer.current_epoch,
        train_seconds=round(seconds + float(receipt.get("train_seconds", 0) or 0), 2),
        best_checkpoint=str((model_dir / "best.ckpt").relative_to(root)),
        best_val_acc=_metric(trainer, "val/acc_best"),
        early_stopped=bool(exp.patience and trainer.current_epoch < exp.epochs),
        devices=trainer.num_devices,
        num_nodes=trainer.num_nodes,
        strategy=type(trainer.strategy).__name__,
        precision=str(trainer.precision),
    )
    tracking.write_receipt(model_dir, receipt)
    tracking.log_to_run(
        receipt,
        metrics={"train_seconds": receipt["train_seconds"], "epochs_run": trainer.current_epoch},
        artifacts=[
            model_dir / "summary.txt",
            model_dir / "history.csv",
            split_dir(exp.dataset, root) / "manifest.json",
            model_dir / "best.ckpt",
        ],
        root=root,
    )
    info(
        f"train@{name}: {receipt['epochs_run']} epochs in {receipt['train_seconds']:.1f}s, "
        f"best val/acc {receipt['best_val_acc']:.4f}, run {receipt['run_id']}"
    )
    return receipt


def _metric(trainer: L.Trainer, key: str) -> float:
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else float("nan")


def _receipt_or_empty(model_dir: Path) -> dict[str, Any]:
    try:
        return tracking.read_receipt(model_dir)
    except (FileNotFoundError, ValueError):
        return {}


def init_weights(model: Classifier, checkpoint: Path) -> None:
    """Start from another experiment's best weights (same architecture)."""
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{checkpoint}: init_from needs that experiment trained first "
            f"(`dvc repro train@{checkpoint.parent.name}`)"
        )
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    net_state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    missing, unexpected = model.net.load_state_dict(net_state, strict=False)
    if unexpected or missing:
        raise ValueError(
            f"{checkpoint}: weights do not fit experiment {model.hparams.experiment!r} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
