"""A best checkpoint on a user's inputs: ``nnlab predict``, the registered ``<experiment>@best``."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from importlib.metadata import version as installed
from pathlib import Path
from typing import Any
from unittest import mock

import mlflow
import numpy as np
import pandas as pd
import torch
from PIL import Image

import nnlab
from nnlab import paths, tracking
from nnlab.classifier import inference_trainer, load_classifier
from nnlab.config import LoaderConfig, Params
from nnlab.data import reader
from nnlab.data.datamodule import ArrayDataset, make_loader
from nnlab.data.prepare import load_arrays
from nnlab.data.text import VOCAB_ASSET, Vocabulary
from nnlab.files import file_digest, regular_file
from nnlab.log import info
from nnlab.models.backbones import compose

CHECKPOINT = "checkpoint"  # artifact: the best checkpoint
BASE_TREE = "base"  # artifact: data/split/<cache>/base.pt, the tree a features head needs
ALIAS = "best"
METRIC = "test/acc"
DIGEST_TAG = "nnlab.checkpoint_sha256"  # on a model version: the checkpoint it holds
STORE_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
MODEL_CODE = "import mlflow, nnlab.serving\nmlflow.models.set_model(nnlab.serving.NnlabModel())\n"
_LOGGING: dict[str, NnlabModel] = {}  # checkpoint sha256 -> the model being logged
# the model's pip requirements, pinned to the versions installed
PINNED = "mlflow torch lightning torchmetrics numpy pandas pillow pydantic pyyaml albumentations"


class NnlabModel(mlflow.pyfunc.PythonModel):
    """A Classifier (a features head with its frozen base) and its dataset's input reader."""

    def load_context(self, context) -> None:
        checkpoint = Path(context.artifacts[CHECKPOINT])
        logging = _LOGGING and _LOGGING.get(file_digest(checkpoint))
        if logging:  # MLflow loads the model log_best_model is logging, to check its example
            vars(self).update(vars(logging))
        else:
            self.use(load_classifier(checkpoint), checkpoint, context.artifacts.get(BASE_TREE, "."))

    def use(self, model, checkpoint: Path, root=Path("."), trainer=None) -> NnlabModel:
        """Serve ``model`` (a head's base under ``root``); ValueError naming ``checkpoint``."""
        meta = model.hparams.meta
        try:
            if model.spec.kind == "features":
                model.net, model.spec = compose(model.net, meta, Path(root))
            self.reader = reader(meta["reader"])  # the split's kind: how its inputs are read
            if model.spec.kind == "text":  # a vocabulary that cannot be read fails here, once
                Vocabulary.from_json(model.spec.extra["assets"][VOCAB_ASSET])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{checkpoint}: cannot serve it ({type(err).__name__}: {err})"
            ) from None
        self.model = model.eval()
        self.classes = list(model.spec.classes)
        self.column = "text" if model.spec.kind == "text" else "image"
        self.trainer = trainer or inference_trainer()
        return self

    def run(self, values: list[Any], batch_size: int = 256) -> list[dict]:
        """Per input (a file, image bytes, text or exception): label, probabilities or error."""
        results, samples = [], []
        for value in values:
            try:
                if isinstance(value, Exception):
                    raise value
                value = regular_file(value) if isinstance(value, Path) else value  # no FIFO
                samples.append(self.reader.load_input(value, self.model.spec))
                results.append({})
            except (OSError, ValueError) as err:
                results.append({"error": str(err)})
        if not samples:
            return results
        arrays = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
        loader = make_loader(ArrayDataset(arrays), batch_size, LoaderConfig())
        probs = torch.cat(self.trainer.predict(self.model, dataloaders=loader)).cpu().numpy()
        for r, p in zip((r for r in results if not r), probs, strict=True):
            probabilities = {c: round(float(v), 4) for c, v in zip(self.classes, p, strict=True)}
            label = self.classes[int(p.argmax())]
            r.update(label=label, probability=probabilities[label], probabilities=probabilities)
        return results

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One row per input (column checked by MLflow): label, probability, p_<class> and error."""
        wanted = bytes if self.column == "image" else str  # never a path: no file is opened
        bad = f"expected {'encoded image bytes' if wanted is bytes else 'a review text'}, got "
        values = [bytes(v) if isinstance(v, bytearray) else v for v in model_input[self.column]]
        results = self.run(
            [v if isinstance(v, wanted) else ValueError(bad + type(v).__name__) for v in values]
        )
        scores = pd.DataFrame(  # NaN where a row could not be read
            [r.get("probabilities", {}) for r in results], columns=self.classes, dtype=float
        ).add_prefix("p_")
        scores.insert(0, "probability", [r.get("probability", np.nan) for r in results])
        scores.insert(0, "label", pd.Series([r.get("label") for r in results], dtype=object))
        errors = [f"row {i}: {r['error']}" if "error" in r else None for i, r in enumerate(results)]
        return scores.assign(error=pd.Series(errors, dtype=object))


def predict(params: Params, name: str, files: list[str], root: Path = Path(".")) -> list[dict]:
    """``nnlab predict``: per file, label and probability, or an error naming it (opens no FIFO)."""
    exp, best = params.experiment(name), paths.model_dir(name, root) / paths.BEST
    model = NnlabModel().use(load_classifier(best), best, root, inference_trainer(params))
    results = model.run([Path(f) for f in files], exp.batch_size)
    return [{"file": f, **r} for f, r in zip(files, results, strict=True)]


def input_example(served: NnlabModel, dataset: str, root: Path) -> pd.DataFrame:
    """Two real test samples as a user would send them: PNG bytes, or review texts."""
    test = load_arrays(dataset, "test", root)
    picks = range(min(2, len(test["y"])))
    if served.column == "text":
        vocab = Vocabulary.from_json(served.model.spec.extra["assets"][VOCAB_ASSET])
        return pd.DataFrame({"text": [vocab.decode(test["x"][i], test["len"][i]) for i in picks]})
    images = [io.BytesIO() for _ in picks]
    for i, buf in zip(picks, images, strict=True):
        Image.fromarray(np.asarray(test["x"][i]).squeeze()).save(buf, format="PNG")  # grey: 2-D
    return pd.DataFrame({"image": [buf.getvalue() for buf in images]})


@tracking.answered()
def log_best_model(params: Params, name: str, root: Path = Path("."), model=None, trainer=None):
    """Register the best checkpoint in its run (once) and move alias best: the version, or None."""
    if not params.tracking.log_model or not tracking.is_global_zero_env():
        return None
    model_dir = paths.model_dir(name, root)
    run = tracking.log_to_run(tracking.read_receipt(model_dir), root=root)
    if run is None:
        return None
    client, checkpoint = tracking.client(root), model_dir / paths.BEST
    digest = file_digest(checkpoint)
    same = client.search_model_versions(f"name = '{name}' AND tags.`{DIGEST_TAG}` = '{digest}'")
    if same:  # evaluate rerun on the same weights (other figures, code)
        version = str(min(int(v.version) for v in same))
    else:  # MLflow's check of the example and the signature it infers reuse ``served``
        served = NnlabModel().use(model or load_classifier(checkpoint), checkpoint, root, trainer)
        dataset = params.source_dataset(params.experiment(name).dataset)
        pins = [f"{d}=={installed(d).split('+')[0]}" for d in PINNED.split()]  # no +cpu
        uri, previous = tracking.tracking_uri(root), mlflow.get_tracking_uri()
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)  # copies: MLflow refuses links (DVC's symlink cache) out of a folder
            artifacts = {CHECKPOINT: str(shutil.copy(checkpoint, tmp / paths.BEST))}
            meta = served.model.hparams.meta
            if meta["kind"] == "features":  # the frozen base travels with the head
                rel = paths.split_dir(meta["dataset"]) / meta["derived"]["base_weights"]
                (tmp / BASE_TREE / rel).parent.mkdir(parents=True)
                shutil.copy(root / rel, tmp / BASE_TREE / rel)
                artifacts[BASE_TREE] = str(tmp / BASE_TREE)
            (tmp / "nnlab_model.py").write_text(MODEL_CODE)  # the model's code, logged with it
            with mock.patch.dict(os.environ, dict.fromkeys(STORE_VARS, uri)):
                mlflow.set_tracking_uri(uri)  # a global URI (MLFlowLogger's) beats the vars
                _LOGGING[digest] = served
                try:
                    with mlflow.start_run(run_id=run.info.run_id):
                        logged = mlflow.pyfunc.log_model(
                            name=name,
                            python_model=str(tmp / "nnlab_model.py"),
                            artifacts=artifacts,
                            code_paths=[str(Path(nnlab.__file__).parent)],
                            pip_requirements=pins,
                            input_example=input_example(served, dataset, root),
                            registered_model_name=name,
                            tags={"nnlab.experiment": name},
                        )
                finally:  # the run's status and end as they were, even if logging failed
                    _LOGGING.pop(digest, None)
                    mlflow.set_tracking_uri(previous)
                    client.set_terminated(run.info.run_id, run.info.status, run.info.end_time)
        version = str(logged.registered_model_version)
        client.set_model_version_tag(name, version, DIGEST_TAG, digest)
    acc = run.data.metrics.get(METRIC)
    if acc is not None:  # shown beside the version in the registry
        client.set_model_version_tag(name, version, METRIC, f"{acc:.4f}")
    done = f"unchanged ({paths.BEST}): still" if same else "registered as"
    best = move_alias(name, root)
    info(f"evaluate@{name}: model {done} {name} version {version}; alias @{ALIAS}: version {best}")
    return version


def move_alias(name: str, root: Path = Path(".")) -> str:
    """Alias ``best`` on the highest test/acc (a tie: the holder keeps it, else the newest)."""
    client = tracking.client(root)
    current = client.get_registered_model(name).aliases.get(ALIAS)

    def score(v) -> tuple:
        run = tracking.find_run(v.run_id, root)  # None: its run was deleted
        acc = run.data.metrics.get(METRIC, float("-inf")) if run else float("-inf")
        return acc, str(v.version) == str(current), int(v.version)

    best = max(client.search_model_versions(f"name = '{name}'"), key=score)
    if str(best.version) != str(current):
        client.set_registered_model_alias(name, ALIAS, best.version)
    return str(best.version)
