"""Evaluate: the best checkpoint on the test split.

Writes ``reports/<experiment>/``: ``metrics.json`` (DVC metrics: test/acc, test/loss, per-class
precision/recall/F1), ``confusion.csv`` and ``history.csv`` (DVC plot data), and PNGs
(confusion matrix, learning curves, misclassified test samples, plus whatever the model
family's pictures add). All of it is logged into the training's MLflow run.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab import tracking, viz
from nnlab.classifier import Classifier, count_parameters, probabilities
from nnlab.config import Params
from nnlab.data.datamodule import ArrayDataset
from nnlab.data.prepare import load_arrays
from nnlab.data.sources import info
from nnlab.files import atomic_dir, atomic_file, write_json
from nnlab.train import MODEL_ROOT

REPORT_ROOT = Path("reports/experiments")


def load_classifier(checkpoint: Path) -> Classifier:
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{checkpoint}: no checkpoint; run `dvc repro train@{checkpoint.parent.name}` first"
        )
    from nnlab.models.registry import loading_checkpoint

    with loading_checkpoint():
        model = Classifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    return model.eval()


@torch.inference_mode()
def predict_arrays(
    model: Classifier, arrays: dict[str, np.ndarray], batch_size: int = 256
) -> tuple[np.ndarray, float]:
    """Class probabilities (N, C) for a split, and the mean loss."""
    data = ArrayDataset(arrays)
    probs, loss_sum = [], 0.0
    for start in range(0, len(data), batch_size):
        batch = data.__getitems__(list(range(start, min(start + batch_size, len(data)))))
        logits = model(*model.inputs(batch))
        loss_sum += float(model.loss(logits, batch["y"])) * len(batch["y"])
        probs.append(probabilities(logits).numpy())
    return np.concatenate(probs), loss_sum / max(len(data), 1)


def classification_metrics(
    y: np.ndarray, pred: np.ndarray, classes: list[str]
) -> tuple[dict[str, Any], np.ndarray]:
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    per_class = {}
    for i, name in enumerate(classes):
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(cm[i, :].sum()),
        }
    return per_class, cm


def write_text_examples(
    arrays: dict[str, np.ndarray],
    y: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    assets: dict[str, Any],
    out: Path,
    per_class: int = 3,
) -> None:
    """A few test texts per class plus the most confidently wrong ones, with probabilities,
    decoded with the vocabulary the model carries (what the model read: <unk> for unknowns)."""
    from nnlab.data.text import VOCAB_ASSET, Vocabulary

    if VOCAB_ASSET not in assets:
        return
    vocab = Vocabulary.from_json(assets[VOCAB_ASSET])
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    picks = [("sample", i) for c in range(len(classes)) for i in np.flatnonzero(y == c)[:per_class]]
    picks += [("most confidently wrong", i)
              for i in wrong[np.argsort(-probs[wrong, pred[wrong]])][:per_class]]
    lines = ["# Test examples", ""]
    for kind, i in picks:
        p = ", ".join(f"P({c}) = {probs[i, k]:.3f}" for k, c in enumerate(classes))
        text = vocab.decode(arrays["x"][i], arrays["len"][i] if "len" in arrays else None)
        lines += [f"## test #{i} ({kind}): actual {classes[y[i]]}, predicted "
                  f"{classes[pred[i]]}; {p}", "", f"> {text}", ""]
    with atomic_file(out, "w") as fh:
        fh.write("\n".join(lines))


def evaluate(params: Params, name: str, root: Path = Path(".")) -> dict[str, Any]:
    exp = params.experiment(name)
    root = Path(root)
    model_dir = root / MODEL_ROOT / name
    receipt = tracking.read_receipt(model_dir)
    model = load_classifier(model_dir / "best.ckpt")
    test = load_arrays(exp.dataset, "test", root)
    y = np.asarray(test["y"])
    probs, loss = predict_arrays(model, test, batch_size=max(exp.batch_size, 64))
    pred = probs.argmax(1)
    classes = list(model.spec.classes)
    per_class, cm = classification_metrics(y, pred, classes)
    metrics = {
        "test/acc": round(float((pred == y).mean()), 4),
        "test/loss": round(loss, 4),
        "test/n": len(y),
        "epochs_run": receipt.get("epochs_run"),
        "best_val_acc": receipt.get("best_val_acc"),
        "train_seconds": receipt.get("train_seconds"),
        "per_class": per_class,
    }
    out = root / REPORT_ROOT / name
    with atomic_dir(out) as tmp:
        write_json(tmp / "metrics.json", metrics)
        with atomic_file(tmp / "confusion.csv", "w") as fh:
            w = csv.writer(fh)
            w.writerow(["actual", "predicted"])
            w.writerows([classes[a], classes[p]] for a, p in zip(y, pred, strict=True))
        if (model_dir / "history.csv").is_file():
            shutil.copy(model_dir / "history.csv", tmp / "history.csv")
        figures = tmp / "figures"
        figures.mkdir()
        if (model_dir / "history.csv").is_file():
            viz.learning_curves(tmp / "history.csv", figures / "learning_curves.png", name)
        viz.confusion_matrix(cm, classes, figures / "confusion_matrix.png", name)
        viz.misclassified(test, y, probs, classes, figures / "misclassified.png", model.spec)
        viz.model_pictures(model, test, figures, root)
        if exp.augment:  # what the training batches looked like
            from nnlab.data.augment import build_augment

            train_x = load_arrays(exp.dataset, "train", root)["x"]
            viz.augmented_samples(train_x, build_augment(exp.augment, params.seed, rank=0),
                                  figures / "augmented_samples.png")
        if model.spec.kind == "text":
            write_text_examples(test, y, probs, classes, model.assets, tmp / "examples.md")
        for asset, obj in model.assets.items():  # what the checkpoint carries, e.g. vocab.json
            write_json(tmp / "assets" / asset, obj)
        total, _ = count_parameters(model.net)
        write_json(tmp / "run.json", {
            "experiment": name,
            "dataset": exp.dataset,
            "model": exp.model,
            "params_total": total,
            "data_source": receipt.get("data_source", "unknown"),
            "pretrained": receipt.get("pretrained"),  # which pretrained weights, if any
            "run_id": receipt["run_id"],
        })
    tracking.log_to_run(
        receipt,
        metrics={"test/acc": metrics["test/acc"], "test/loss": metrics["test/loss"]},
        artifacts=[out],
        artifact_path="evaluation",
        root=root,
    )
    info(f"evaluate@{name}: test/acc {metrics['test/acc']:.4f}, test/loss {loss:.4f} -> {out}")
    return metrics

