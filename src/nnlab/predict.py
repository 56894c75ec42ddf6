"""``nnlab predict``: an experiment's best checkpoint on files given by the user."""

from __future__ import annotations

from pathlib import Path

from nnlab import paths
from nnlab.classifier import inference_trainer, load_classifier
from nnlab.config import Params
from nnlab.serving import NnlabModel


def predict(params: Params, name: str, files: list[str], root: Path = Path(".")) -> list[dict]:
    """One result per file: label and probability, or an error naming the file (a folder, a
    FIFO, a device or a socket is never opened)."""
    exp, best = params.experiment(name), paths.model_dir(name, root) / paths.BEST
    model = NnlabModel().use(load_classifier(best), best, root, inference_trainer(params))
    results = model.run([Path(f) for f in files], exp.batch_size)
    return [{"file": f, **r} for f, r in zip(files, results, strict=True)]
