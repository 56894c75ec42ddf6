"""Evaluate: ``trainer.test`` on the best checkpoint, on the training's accelerator.

Writes ``reports/experiments/<experiment>/``: ``metrics.json`` (the DVC metrics, headline
numbers only: test/acc, test/loss, val/acc_best, epochs_run, train_seconds),
``per_class.json`` (precision/recall/F1/support per class), ``confusion.csv`` and
``history.csv`` (DVC plot data), ``run.json`` (what the comparison reads) and PNGs (learning
curves, confusion matrix, misclassified test samples, and for conv nets feature maps, filter
patterns and Grad-CAM). All of it is logged into the training's MLflow run.
"""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab import paths, tracking, viz
from nnlab.classifier import (
    Classifier,
    count_parameters,
    inference_trainer,
    load_classifier,
    scale_inputs,
)
from nnlab.config import Params, check_experiment
from nnlab.data.datamodule import ArrayDataModule, ArrayDataset
from nnlab.data.prepare import StageOrderError, load_arrays, split_digests
from nnlab.files import atomic_dir, atomic_file, write_json
from nnlab.log import info


def write_text_examples(
    arrays: dict[str, np.ndarray], y: np.ndarray, probs: np.ndarray, classes: list[str],
    assets: dict[str, Any], out: Path, per_class: int = 3,
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


def _per_class(model: Classifier, classes: list[str]) -> dict[str, dict[str, float]]:
    values = {k: v.cpu().tolist() for k, v in model.test_per_class.compute().items()}
    support = model.test_confusion.compute().sum(1).cpu().tolist()
    return {c: {**{k: round(float(v[i]), 4) for k, v in values.items()},
                "support": int(support[i])} for i, c in enumerate(classes)}


def _pictures(params: Params, name: str, model: Classifier, test: dict[str, np.ndarray],
              y: np.ndarray, probs: np.ndarray, figures: Path, root: Path) -> None:
    exp = params.experiment(name)
    classes = list(model.spec.classes)
    cm = model.test_confusion.compute().cpu().numpy()
    viz.confusion_matrix(cm, classes, figures / "confusion_matrix.png", name)
    if model.spec.kind != "image":
        return
    viz.misclassified(test, y, probs, classes, figures / "misclassified.png")
    fig = params.figures
    picks = viz.example_indices(y, fig.images)
    (x,) = scale_inputs(ArrayDataset({"x": test["x"]}).__getitems__(picks))
    viz.model_pictures(model.net.float(), x, y[picks], classes, figures,
                       filters=fig.filters, steps=fig.steps, seed=params.seed)
    if exp.augment:  # what the training batches looked like
        from nnlab.data.augment import build_augment

        train_x = load_arrays(exp.dataset, "train", root)["x"]
        viz.augmented_samples(train_x, build_augment(exp.augment, params.seed, rank=0),
                              figures / "augmented_samples.png")


def _check_same_split(receipt: dict[str, Any], dataset: str, name: str, root: Path) -> None:
    """Refuse to score a checkpoint on a split other than the one it was trained on (a
    re-split with other data params, by hand outside ``dvc repro``): its test samples, or
    their encoding, would differ from the ones the run's numbers belong to."""
    trained_on = receipt.get("split_digests") or {}
    now = split_digests(dataset, root)
    if trained_on and now and trained_on != now:
        changed = ", ".join(f"{s} {trained_on.get(s)} -> {now.get(s)}" for s in sorted(now)
                            if trained_on.get(s) != now.get(s))
        raise StageOrderError(
            f"{paths.split_dir(dataset, root)}: changed since {paths.model_dir(name, root)} "
            f"was trained ({changed}); rerun train@{name} first (dvc repro does)")


def run(params: Params, name: str, root: Path = Path(".")) -> dict[str, Any]:
    exp = params.experiment(name)
    root = Path(root)
    check_experiment(params, name)
    model_dir = paths.model_dir(name, root)
    receipt = tracking.read_receipt(model_dir)
    _check_same_split(receipt, exp.dataset, name, root)
    best = model_dir / paths.BEST
    model = load_classifier(best)
    dm = ArrayDataModule(exp.dataset, exp, params.loader, params.seed, root)
    # the training's callbacks are not needed to score the weights ckpt_path restores
    warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`")
    inference_trainer(params).test(model, datamodule=dm, ckpt_path=str(best), verbose=False,
                                   weights_only=True)
    model = model.cpu()
    test = load_arrays(exp.dataset, "test", root)
    y = np.asarray(test["y"])
    probs = torch.cat(model.test_probs).numpy()
    classes = list(model.spec.classes)
    metrics = {
        "test/acc": round(float(model.test_acc.compute()), 4),
        "test/loss": round(float(model.test_loss.compute()), 4),
        "val/acc_best": receipt.get("val/acc_best"),
        "epochs_run": receipt.get("epochs_run"),
        "train_seconds": receipt.get("train_seconds"),
    }
    out = paths.report_dir(name, root)
    with atomic_dir(out) as tmp:
        write_json(tmp / paths.METRICS, metrics)
        write_json(tmp / paths.PER_CLASS, _per_class(model, classes))
        pred = probs.argmax(1)
        with atomic_file(tmp / paths.CONFUSION, "w") as fh:
            w = csv.writer(fh)
            w.writerow(["actual", "predicted"])
            w.writerows([classes[a], classes[p]] for a, p in zip(y, pred, strict=True))
        figures = tmp / paths.FIGURES
        figures.mkdir()
        if (model_dir / paths.HISTORY).is_file():
            shutil.copy(model_dir / paths.HISTORY, tmp / paths.HISTORY)
            viz.learning_curves(tmp / paths.HISTORY, figures / "learning_curves.png", name)
        _pictures(params, name, model, test, y, probs, figures, root)
        if model.spec.kind == "text":
            write_text_examples(test, y, probs, classes, model.assets, tmp / "examples.md")
        for asset, obj in model.assets.items():  # what the checkpoint carries, e.g. vocab.json
            write_json(tmp / "assets" / asset, obj)
        write_json(tmp / paths.RECEIPT, {
            "experiment": name,
            "dataset": exp.dataset,
            "model": exp.model,
            "params_total": count_parameters(model.net)[0],
            "test_samples": len(y),
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
    from nnlab import serving  # mlflow.pyfunc only here

    serving.log_best_model(params, name, root)  # registered; alias best on the best test/acc
    info(f"evaluate@{name}: test/acc {metrics['test/acc']:.4f}, "
         f"test/loss {metrics['test/loss']:.4f} -> {out}")
    return metrics
