"""``nnlab predict``: an experiment's best checkpoint on files given by the user.

:class:`Predictor` is what ``nnlab predict`` and the registered MLflow model
(:mod:`nnlab.serving`) share: the loaded Classifier (a head trained on a frozen base's cached
features is composed with that base, so it classifies raw photos), the dataset's own input
reader (the same resizing, inversion or tokenizing as training saw), and one batched
``trainer.predict`` pass. Every input is read on its own: an unreadable one gets its own
error and the others are still predicted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from nnlab import paths
from nnlab.classifier import Classifier, inference_trainer, load_classifier
from nnlab.config import LoaderConfig, Params
from nnlab.data import dataset_module
from nnlab.data.datamodule import ArrayDataset, make_loader


class Predictor:
    def __init__(self, model: Classifier, root: Path = Path(".")):
        meta = model.hparams.meta
        if model.spec.kind == "features":
            from nnlab.models.backbones import compose

            model.net, model.spec = compose(model.net, meta, Path(root))
        self.model = model.eval()
        self.classes = list(model.spec.classes)
        self.module = dataset_module(meta.get("derived", {}).get("from", meta["dataset"]))

    def read(self, value: Path | bytes | str) -> dict[str, np.ndarray]:
        """One input as the model reads it: a file, encoded image bytes or a review text
        (ValueError/OSError naming it when it cannot be read)."""
        return self.module.load_input(value, self.model.spec)

    def run(self, values: list[Any], trainer: L.Trainer, batch_size: int = 64) -> list[dict]:
        """Per input: label, probability and per-class probabilities, or an error (an input
        given as an exception is that input's error)."""
        results: list[dict[str, Any]] = []
        samples = []
        for value in values:
            try:
                if isinstance(value, Exception):
                    raise value
                samples.append(self.read(value))
                results.append({})
            except (OSError, ValueError) as err:
                results.append({"error": str(err)})
        if not samples:
            return results
        arrays = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
        loader = make_loader(ArrayDataset(arrays), batch_size, LoaderConfig())
        probs = torch.cat(trainer.predict(self.model, dataloaders=loader)).cpu().numpy()
        for r, p in zip((r for r in results if "error" not in r), probs, strict=True):
            k = int(p.argmax())
            r.update(label=self.classes[k], probability=round(float(p[k]), 4),
                     probabilities={c: round(float(v), 4)
                                    for c, v in zip(self.classes, p, strict=True)})
        return results


def predict(params: Params, name: str, files: list[str], root: Path = Path(".")) -> list[dict]:
    """One result per file: label and probability, or an error naming the file."""
    exp = params.experiment(name)
    predictor = Predictor(load_classifier(paths.model_dir(name, root) / paths.BEST), root)
    results = predictor.run([Path(f) for f in files], inference_trainer(params), exp.batch_size)
    return [{"file": f, **r} for f, r in zip(files, results, strict=True)]
