"""``nnlab predict``: an experiment's best checkpoint on files given by the user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab.classifier import probabilities
from nnlab.config import Params
from nnlab.data import dataset_module
from nnlab.data.datamodule import ArrayDataset
from nnlab.evaluate import load_classifier
from nnlab.train import MODEL_ROOT


def predict(params: Params, name: str, files: list[str], root: Path = Path(".")) -> list[dict]:
    """One result per file: label and probability, or an error naming the file."""
    exp = params.experiment(name)
    model = load_classifier(Path(root) / MODEL_ROOT / name / "best.ckpt")
    module = dataset_module(exp.dataset)
    classes = list(model.spec.classes)
    results: list[dict[str, Any]] = []
    for f in files:
        try:
            sample = module.load_input(Path(f), model.spec)
        except (OSError, ValueError) as err:
            results.append({"file": f, "error": str(err)})
            continue
        arrays = {k: np.asarray(v)[None] for k, v in sample.items()}
        arrays["y"] = np.zeros(1, dtype=np.int64)
        batch = ArrayDataset(arrays).__getitems__([0])
        with torch.inference_mode():
            probs = probabilities(model(*model.inputs(batch)))[0].numpy()
        k = int(probs.argmax())
        results.append({
            "file": f,
            "label": classes[k],
            "probability": round(float(probs[k]), 4),
            "probabilities": {c: round(float(p), 4) for c, p in zip(classes, probs, strict=True)},
        })
    return results
