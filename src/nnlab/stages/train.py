"""train@<experiment>: fit one experiment into ``models/<experiment>/``; earlier outputs are cleared
only as the first epoch begins; a killed run resumes from last.ckpt with the same params."""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    LearningRateMonitor,
    ModelCheckpoint,
    Timer,
)

from nnlab import paths, tracking
from nnlab.checks import check_experiment
from nnlab.classifier import Classifier
from nnlab.config import Params
from nnlab.data.datamodule import ArrayDataModule
from nnlab.data.prepare import split_digests
from nnlab.files import UnsafeCheckpointError, atomic_file, exclusive, load_checkpoint
from nnlab.log import info
from nnlab.summary import summary_text
from nnlab.threads import ThreadSizer, jobs_dir

HISTORY_KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")


class History(Callback):
    """Per-epoch metrics in ``history.csv``; kept in the checkpoint, so a resumed run keeps them."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # recorded before ModelCheckpoint's hook, which runs last
            self._record(trainer)

    def _record(self, trainer: L.Trainer) -> None:
        metrics = trainer.callback_metrics
        row = {k: float(metrics[k]) for k in HISTORY_KEYS if k in metrics}
        self.rows[trainer.current_epoch] = {"epoch": trainer.current_epoch, **row}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch not in self.rows:  # no validation this epoch
            self._record(trainer)
        if trainer.is_global_zero:
            with atomic_file(self.path, "w") as fh:
                writer = csv.DictWriter(fh, fieldnames=["epoch", *HISTORY_KEYS], restval="")
                writer.writeheader()
                writer.writerows(self.rows[epoch] for epoch in sorted(self.rows))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows.values())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = {row["epoch"]: row for row in state.get("rows", [])}


def build_classifier(params: Params, name: str, meta: dict[str, Any], phash: str) -> Classifier:
    fields = {"model", "model_options", "optimizer", "lr", "weight_decay", "momentum"}
    fields |= {"lr_schedule", "warmup_epochs"}
    kwargs = params.experiment(name).model_dump(include=fields | {"channels_last", "finetune"})
    return Classifier(meta=meta, experiment=name, params_hash=phash, **kwargs)


def best_checkpoint(model_dir: Path) -> ModelCheckpoint:
    """``best.ckpt`` by ``val/acc`` and ``last.ckpt``, in ``model_dir``."""
    return ModelCheckpoint(
        dirpath=model_dir,
        filename="best",
        monitor="val/acc",
        mode="max",
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )


def resumable_checkpoint(model_dir: Path, phash: str) -> Path | None:
    """``last.ckpt`` of an interrupted run with the same params, else None."""
    last = model_dir / paths.LAST
    if not last.is_file() or tracking.receipt_or_empty(model_dir).get("status") == "FINISHED":
        return None
    try:
        ckpt = load_checkpoint(last)  # a hostile pickle is refused here, never run
    except UnsafeCheckpointError:
        raise
    except ValueError as err:  # a truncated checkpoint is not worth resuming
        info(f"train@{model_dir.name}: not resuming: {err}")
        return None
    return last if ckpt.get("hyper_parameters", {}).get("params_hash") == phash else None


def run(params: Params, name: str, root: Path = Path(".")) -> dict[str, Any]:
    """Fit one experiment (one at a time); returns the run receipt (on rank 0)."""
    root, model_dir = Path(root), paths.model_dir(name, root)
    check_experiment(params, name)  # augmentation, Trainer values, devices: before anything
    jobs_dir()
    if model_dir.is_symlink():
        raise ValueError(f"{model_dir}: is a symbolic link; train writes only real folders")
    if not tracking.is_global_zero_env():  # a launched rank: rank 0 holds the lock
        return _fit(params, name, root)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(model_dir.with_name(f".{name}{paths.LOCK}"), f"train@{name}"):
        receipt = _fit(params, name, root)
    if "DVC_STAGE" not in os.environ and (root / "dvc.yaml").is_file():
        # `dvc exp run` checks the workspace out (forced) first: it deletes an unrecorded model
        info(
            f"train@{name}: trained outside DVC; record it with `dvc commit -f train@{name}`, "
            f"or the next `dvc exp run` deletes models/{name} (or restores the recorded one)"
        )
    return receipt


def _fit(params: Params, name: str, root: Path) -> dict[str, Any]:
    exp, model_dir, flat = params.experiment(name), paths.model_dir(name, root), params.flat(name)
    phash, trainer_kwargs = tracking.params_hash(flat), params.trainer.kwargs()
    L.seed_everything(params.seed, workers=True, verbose=False)
    dm = ArrayDataModule(exp.dataset, exp, params.loader, params.seed, root)
    model = build_classifier(params, name, dm.meta, phash)
    resume = resumable_checkpoint(model_dir, phash)
    receipt = tracking.receipt_or_empty(model_dir) if resume else {}
    source = dm.meta.get("source", "unknown")
    pretrained = dict(getattr(model.net, "provenance", {})) or dm.meta.get("pretrained") or {}
    tags = tracking.run_tags(name, exp.dataset, source, root)
    tags.update({f"pretrained.{key}": str(value) for key, value in pretrained.items()})
    tags["precision"] = str(trainer_kwargs["precision"])  # as resolved on this machine
    logger = tracking.make_logger(name, exp.dataset, tags, root, receipt.get("run_id"))
    receipt |= {"experiment": name, "dataset": exp.dataset, "params_hash": phash}
    receipt |= {"data_source": source, "split_digests": split_digests(exp.dataset, root)}
    receipt |= {"status": "RUNNING", **({"pretrained": pretrained} if pretrained else {})}
    summary = summary_text(model.net, model.spec, name)

    def start(trainer: L.Trainer, _: Any) -> None:
        """Sanity-checked: clear earlier outputs unless resuming; the RUNNING receipt, summary."""
        receipt.update(run_id=logger.run_id, experiment_id=logger.experiment_id)
        if resume is None:  # a split that cannot be read stops here, before anything is cleared
            tracking.log_datasets(receipt["run_id"], exp.dataset, root)
            if model_dir.exists():
                shutil.rmtree(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        tracking.write_receipt(model_dir, receipt)
        (model_dir / paths.SUMMARY).write_text(summary + "\n")

    dm.sizer = ThreadSizer(params.loader.threads, params.loader.num_workers)
    best, timer = best_checkpoint(model_dir), Timer()  # the Timer's time is kept in last.ckpt
    callbacks = [dm.sizer, best, History(model_dir / paths.HISTORY), timer]
    if logger:  # rank 0 (only it has a logger): the run starts, learning rates per epoch
        callbacks += [LambdaCallback(on_train_start=start), LearningRateMonitor("epoch")]
    if exp.patience is not None:
        callbacks.append(EarlyStopping(monitor="val/acc", mode="max", patience=exp.patience))
    trainer = L.Trainer(
        **{"enable_model_summary": False, **trainer_kwargs},  # summary.txt has it
        max_epochs=exp.epochs,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=str(model_dir),
    )
    if resume is not None:
        info(f"train@{name}: resuming from {resume}")
    if logger:  # rank 0; the input size really used (a substitute may draw smaller images)
        shape = "x".join(str(d) for d in dm.meta["input_shape"])
        logger.log_hyperparams({**flat, "data.input_shape": shape})
    trainer.fit(model, datamodule=dm, ckpt_path=resume, weights_only=True)
    if trainer.interrupted:
        if (model_dir / paths.LAST).is_file():
            info(f"train@{name}: interrupted; {model_dir / paths.LAST} kept, rerun to resume")
        sys.exit(130)
    if not logger:  # not rank 0
        return {}
    if best.best_model_score is None or not (model_dir / paths.BEST).is_file():
        logger.finalize("failed")  # never FINISHED without a checkpoint
        raise RuntimeError(
            f"train@{name}: no {paths.BEST} was written "
            f"(no validation batch ran? check the val split and limit_val_batches)"
        )
    epochs, seconds = trainer.current_epoch, round(timer.time_elapsed("train"), 2)
    receipt |= {"status": "FINISHED", "epochs_run": epochs, "train_seconds": seconds}
    receipt["val/acc_best"] = round(float(best.best_model_score), 4)
    receipt["early_stopped"] = bool(exp.patience and epochs < exp.epochs)
    receipt |= {"devices": trainer.num_devices, "num_nodes": trainer.num_nodes}
    receipt |= {"strategy": type(trainer.strategy).__name__, "precision": str(trainer.precision)}
    tracking.write_receipt(model_dir, receipt)
    artifacts = [model_dir / paths.SUMMARY, model_dir / paths.HISTORY]
    artifacts += [paths.split_dir(exp.dataset, root) / paths.MANIFEST, model_dir / paths.BEST]
    metrics = {key: receipt[key] for key in ("train_seconds", "epochs_run")}
    tracking.log_to_run(receipt, metrics=metrics, artifacts=artifacts, root=root)
    info(
        f"train@{name}: {receipt['epochs_run']} epochs in {receipt['train_seconds']:.1f}s, "
        f"best val/acc {receipt['val/acc_best']}, run {receipt['run_id']}"
    )
    return receipt
