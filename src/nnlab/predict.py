"""``nnlab predict``: an experiment's best checkpoint on files given by the user.

Every file is read on its own: an unreadable one gets its own error line and the others are
still predicted, in one ``trainer.predict`` pass on the training's accelerator. A head trained
on a frozen base's cached features is composed with that base and classifies raw photos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab import paths
from nnlab.classifier import inference_trainer, load_classifier
from nnlab.config import Params
from nnlab.data import dataset_module
from nnlab.data.datamodule import ArrayDataset, make_loader


def predict(params: Params, name: str, files: list[str], root: Path = Path(".")) -> list[dict]:
    """One result per file: label and probability, or an error naming the file."""
    exp = params.experiment(name)
    model = load_classifier(paths.model_dir(name, root) / paths.BEST)
    if model.spec.kind == "features":
        from nnlab.features import compose

        model.net, model.spec = compose(model.net, model.hparams.meta, Path(root))
    module = dataset_module(params.source_dataset(exp.dataset))
    classes = list(model.spec.classes)
    results: list[dict[str, Any]] = []
    samples: list[dict[str, np.ndarray]] = []
    for f in files:
        try:
            samples.append(module.load_input(Path(f), model.spec))
            results.append({"file": f})
        except (OSError, ValueError) as err:
            results.append({"file": f, "error": str(err)})
    if not samples:
        return results
    arrays = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    loader = make_loader(ArrayDataset(arrays), exp.batch_size, params.loader)
    probs = torch.cat(inference_trainer(params).predict(model, dataloaders=loader)).cpu().numpy()
    for r, p in zip((r for r in results if "error" not in r), probs, strict=True):
        k = int(p.argmax())
        r.update(label=classes[k], probability=round(float(p[k]), 4),
                 probabilities={c: round(float(v), 4) for c, v in zip(classes, p, strict=True)})
    return results
