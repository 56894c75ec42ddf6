"""evaluate@<exp>: test the best checkpoint into reports/experiments/<exp>/; log and register it."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab import paths, serving, tracking, viz
from nnlab.checks import check_experiment
from nnlab.classifier import count_parameters, inference_trainer, load_classifier, scale_inputs
from nnlab.config import Params
from nnlab.data.augment import build_augment
from nnlab.data.datamodule import ArrayDataModule, ArrayDataset
from nnlab.data.prepare import StageOrderError, load_arrays, split_digests
from nnlab.data.text import VOCAB_ASSET, Vocabulary
from nnlab.files import atomic_dir, write_json
from nnlab.log import info
from nnlab.viz import inside


def run(params: Params, name: str, root: Path = Path(".")) -> dict[str, Any]:
    exp, root = params.experiment(name), Path(root)
    if not tracking.is_global_zero_env():  # it would write files, log nothing and say nothing
        ranks = ", ".join(f"{k}={v}" for k in tracking.RANK_VARS if (v := os.environ.get(k)))
        raise RuntimeError(f"evaluate@{name} runs as one process, not a rank ({ranks}): unset them")
    check_experiment(params, name)
    model_dir = paths.model_dir(name, root)
    receipt = tracking.read_receipt(model_dir)
    # a checkpoint trained on another split (re-split by hand outside `dvc repro`) is refused
    trained_on, now = receipt.get("split_digests") or {}, split_digests(exp.dataset, root)
    changed = [
        f"{s} {trained_on.get(s)} -> {now[s]}" for s in sorted(now) if trained_on.get(s) != now[s]
    ]
    if trained_on and changed:
        raise StageOrderError(
            f"{paths.split_dir(exp.dataset, root)}: changed since {model_dir} was trained "
            f"({', '.join(changed)}); rerun train@{name} first (dvc repro does)"
        )
    trainer = inference_trainer(params)  # the one Trainer: test, then the model's example
    model = load_classifier(model_dir / paths.BEST)
    dm = ArrayDataModule(exp.dataset, exp, params.loader, params.seed, root)
    (logged,) = trainer.test(model, datamodule=dm, verbose=False)
    model.cpu()
    test = load_arrays(exp.dataset, "test", root)
    y, probs = np.asarray(test["y"]), torch.cat(model.test_probs).numpy()
    scores = {k: round(logged[k], 4) for k in ("test/acc", "test/loss")}
    metrics = scores | {k: receipt.get(k) for k in ("val/acc_best", "epochs_run", "train_seconds")}
    out, classes = paths.report_dir(name, root), list(model.spec.classes)
    with atomic_dir(out) as tmp:
        write_json(tmp / paths.METRICS, metrics)
        cm = model.test_confusion.compute().cpu()
        tp, n, p = cm.diag(), cm.sum(1), cm.sum(0)  # true positives, support, predicted
        scored = {"precision": tp / p, "recall": tp / n, "f1": 2 * tp / (n + p), "support": n}
        scored = {k: v.nan_to_num(0.0).tolist() for k, v in scored.items()}  # 0/0: 0 (torchmetrics)
        table = {c: {k: round(v[i], 4) for k, v in scored.items()} for i, c in enumerate(classes)}
        write_json(tmp / paths.PER_CLASS, table)
        pairs = zip(y, probs.argmax(1), strict=True)  # one row per sample: DVC's confusion plot
        rows = [["actual", "predicted"], *([classes[a], classes[p]] for a, p in pairs)]
        with (tmp / paths.CONFUSION).open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
        if (model_dir / paths.HISTORY).is_file():
            shutil.copy(model_dir / paths.HISTORY, tmp / paths.HISTORY)
        _figures(params, name, model, test, probs, tmp, root)
        report = {"experiment": name, "dataset": exp.dataset, "model": exp.model}
        report |= {"params_total": count_parameters(model.net)[0], "test_samples": len(y)}
        report |= {"data_source": receipt.get("data_source", "unknown")}
        report |= {"pretrained": receipt.get("pretrained"), "run_id": receipt["run_id"]}
        report |= {"precision": receipt.get("precision")}
        write_json(tmp / paths.RECEIPT, report)  # what compare reads
    tracking.log_to_run(receipt, scores, [out], artifact_path="evaluation", root=root)
    serving.log_best_model(params, name, root, model, trainer)  # alias best: max test/acc
    info(f"evaluate@{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()) + f" -> {out}")
    return metrics


def _figures(params: Params, name: str, model, test, probs, out: Path, root: Path) -> None:
    """``figures/``: curves, confusion; test examples (texts); misclassified, insides (images)."""
    exp, classes, y = params.experiment(name), list(model.spec.classes), np.asarray(test["y"])
    (figures := out / paths.FIGURES).mkdir()
    if (out / paths.HISTORY).is_file():
        viz.learning_curves(out / paths.HISTORY, figures / paths.LEARNING_CURVES_PNG, name)
    viz.confusion_matrix(model.test_confusion, classes, figures / paths.CONFUSION_PNG, name)
    if vocab := model.spec.extra.get("assets", {}).get(VOCAB_ASSET):  # a text model
        _text_examples(test, probs, classes, vocab, figures / paths.EXAMPLES)
    if model.spec.kind == "image":  # misclassified, what the net sees, augmented batches
        viz.misclassified(test["x"], y, probs, classes, figures / paths.MISCLASSIFIED_PNG)
        picks = viz.example_indices(y, params.figures.images)
        (x,) = scale_inputs(ArrayDataset({"x": test["x"]}).__getitems__(picks))
        drawing = params.figures.model_dump(include={"filters", "steps"}) | {"seed": params.seed}
        inside.model_pictures(model.net.float(), x, y[picks], classes, figures, **drawing)
    if exp.augment and model.spec.kind == "image":  # what the training batches looked like
        train_x = load_arrays(exp.dataset, "train", root)["x"]
        augment = build_augment(exp.augment, params.seed, rank=0)
        viz.augmented_samples(train_x, augment, figures / paths.AUGMENTED_PNG)


def _text_examples(test, probs: np.ndarray, classes: list[str], vocab, out: Path, n=3) -> None:
    """``n`` test texts per class and the ``n`` most confidently wrong, as the model read them."""
    vocab = Vocabulary.from_json(vocab)
    y, pred = np.asarray(test["y"]), probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    picks = [("sample", i) for c in range(len(classes)) for i in np.flatnonzero(y == c)[:n]]
    confident = wrong[np.argsort(-probs[wrong, pred[wrong]])][:n]
    picks += [("most confidently wrong", i) for i in confident]
    lines = ["# Test examples", ""]
    for kind, i in picks:
        p = ", ".join(f"P({c}) = {probs[i, k]:.3f}" for k, c in enumerate(classes))
        text = vocab.decode(test["x"][i], test["len"][i] if "len" in test else None)
        title = f"## test #{i} ({kind}): actual {classes[y[i]]}, predicted {classes[pred[i]]}; {p}"
        lines += [title, "", f"> {text}", ""]
    out.write_text("\n".join(lines))  # inside evaluate's atomic folder
