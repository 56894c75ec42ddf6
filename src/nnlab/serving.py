"""An experiment's best model as an MLflow pyfunc model in the Model Registry.

``evaluate`` calls :func:`log_best_model` (rank 0, after ``test/acc`` is logged): the best
checkpoint is logged into the training's run as an MLflow model with its preprocessing inside,
registered under the experiment's name, and the alias ``best`` moves to the registered version
whose run has the highest ``test/acc``. Then, in any process that reaches the store::

    model = mlflow.pyfunc.load_model("models:/mnist_cnn@best")
    model.predict(pd.DataFrame({"image": [open("digit.png", "rb").read()]}))

takes encoded images (PNG, JPEG...: column ``image``) or reviews (column ``text``), prepares
them as ``nnlab predict`` does (the dataset's resize/convert rules, MNIST's inversion of dark
digits on light paper, the tokenizer and the vocabulary the checkpoint carries) and returns one
row per input: ``label``, ``probability``, one ``p_<class>`` per class, and ``error`` (None, or
why that input could not be read: the other rows are still predicted). A head trained on a
features cache travels with the frozen base's weights and is composed as ``nnlab predict``
composes it (:func:`nnlab.features.compose`).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

import nnlab
from nnlab import paths, tracking
from nnlab.config import Params
from nnlab.log import info

CHECKPOINT = "checkpoint"  # artifact: the best checkpoint
BASE_TREE = "base"  # artifact: data/split/<cache>/base.pt, the tree features.compose reads
ALIAS = "best"
METRIC = "test/acc"
STORE_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
BATCH = 256  # inputs per forward pass
COLUMNS = {"image": "image", "features": "image", "text": "text"}  # spec kind -> input column
MODEL_CODE = """import mlflow
from nnlab.serving import NnlabModel

mlflow.models.set_model(NnlabModel())
"""
REQUIREMENTS = ("mlflow", "torch", "lightning", "torchmetrics", "numpy", "pandas", "pillow",
                "pydantic", "pyyaml", "albumentations")


def _pinned(dist: str) -> str:
    """``dist==<installed version>`` (local labels such as ``+cpu`` dropped), else ``dist``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{dist}=={version(dist).split('+')[0]}"
    except PackageNotFoundError:
        return dist


class NnlabModel(mlflow.pyfunc.PythonModel):
    """A best checkpoint behind MLflow's pyfunc interface (see the module docstring)."""

    def load_context(self, context) -> None:
        from nnlab.classifier import load_classifier

        self.use(load_classifier(Path(context.artifacts[CHECKPOINT])),
                 Path(context.artifacts.get(BASE_TREE, ".")))

    def use(self, model, base_root: Path = Path(".")) -> NnlabModel:
        """Serve ``model`` (a loaded Classifier) as ``nnlab predict`` does; a head on a
        features cache is composed with its base, whose weights lie under ``base_root``."""
        from nnlab.predict import Predictor

        self.predictor = Predictor(model.cpu(), base_root)
        self.column = COLUMNS[model.spec.kind]
        return self

    @property
    def model(self):
        return self.predictor.model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from nnlab.classifier import inference_trainer

        if self.column not in model_input.columns:
            raise ValueError(f"expected a DataFrame with a column {self.column!r} "
                             f"(got {list(model_input.columns)})")
        values = [bytes(v) if isinstance(v, bytearray) else v for v in model_input[self.column]]
        wanted = bytes if self.column == "image" else str  # never a path: no file is opened
        checked = [v if isinstance(v, wanted) else ValueError(
            f"expected {'encoded image bytes' if wanted is bytes else 'a review text'}, got "
            f"{type(v).__name__}") for v in values]
        results = self.predictor.run(checked, inference_trainer(), BATCH)
        classes = self.predictor.classes
        out = pd.DataFrame({
            "label": pd.Series([r.get("label") for r in results], dtype=object),
            "probability": [r.get("probability", np.nan) for r in results],
        })
        for c in classes:
            out[f"p_{c}"] = [r.get("probabilities", {}).get(c, np.nan) for r in results]
        out["error"] = pd.Series([f"row {i}: {r['error']}" if "error" in r else None
                                  for i, r in enumerate(results)], dtype=object)
        return out


def input_example(model, dataset: str, root: Path, n: int = 2) -> pd.DataFrame:
    """``n`` real test samples as a user would send them: PNG bytes, or review texts."""
    from PIL import Image

    from nnlab.data.prepare import load_arrays
    from nnlab.data.text import VOCAB_ASSET, Vocabulary

    test = load_arrays(dataset, "test", root)
    picks = range(min(n, len(test["y"])))
    if COLUMNS[model.spec.kind] == "text":
        vocab = Vocabulary.from_json(model.spec.extra["assets"][VOCAB_ASSET])
        return pd.DataFrame({"text": [vocab.decode(test["x"][i], test["len"][i]) for i in picks]})
    images = []
    for i in picks:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(test["x"][i]).squeeze(-1) if test["x"].shape[-1] == 1
                        else np.asarray(test["x"][i])).save(buf, format="PNG")
        images.append(buf.getvalue())
    return pd.DataFrame({"image": images})


@contextmanager
def _fluent_store(uri: str):
    """MLflow's fluent API (log_model, registration) on ``uri`` for a moment, through the
    variables MLflow reads, and through its global URI where one was set in this process
    (Lightning's MLFlowLogger sets it); both are as they were afterwards."""
    saved = {k: os.environ.get(k) for k in STORE_VARS}
    os.environ.update(dict.fromkeys(STORE_VARS, uri))
    previous = mlflow.get_tracking_uri()  # the global one, if set: it wins over the variables
    if previous != uri:
        mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if previous != uri:
            mlflow.set_tracking_uri(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_best_model(params: Params, name: str, root: Path = Path(".")) -> str | None:
    """Log experiment ``name``'s best checkpoint into its training run as an MLflow model,
    register it under ``name``, move alias ``best`` to the version with the highest test/acc.
    The new version, or None: ``tracking.log_model: false``, a rank other than 0, or a run the
    store does not hold (one warning line, as for the evaluation's files)."""
    from mlflow.models import infer_signature

    from nnlab.classifier import load_classifier

    root = Path(root)
    if not params.tracking.log_model or not tracking.is_global_zero_env():
        return None
    model_dir = paths.model_dir(name, root)
    receipt = tracking.read_receipt(model_dir)
    if not tracking.log_to_run(receipt, root=root):
        return None
    exp = params.experiment(name)
    checkpoint = model_dir / paths.BEST
    served = NnlabModel().use(load_classifier(checkpoint), root)
    example = input_example(served.model, params.source_dataset(exp.dataset), root)
    signature = infer_signature(example, served.predict(None, example).drop(columns="error"))
    client = tracking.client(root)
    run = client.get_run(receipt["run_id"]).info
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {CHECKPOINT: str(checkpoint)}
        meta = served.model.hparams.meta
        if meta["kind"] == "features":  # the frozen base travels with the head
            rel = paths.split_dir(meta["dataset"]) / meta["derived"]["base_weights"]
            (Path(tmp) / rel).parent.mkdir(parents=True)
            shutil.copy(root / rel, Path(tmp) / rel)
            artifacts[BASE_TREE] = tmp
        code = Path(tmp) / "nnlab_model.py"  # models from code: nothing pickled
        code.write_text(MODEL_CODE)
        try:
            with _fluent_store(tracking.tracking_uri(root)), mlflow.start_run(run_id=run.run_id):
                logged = mlflow.pyfunc.log_model(
                    name=name, python_model=code, artifacts=artifacts,
                    code_paths=[str(Path(nnlab.__file__).parent)],
                    pip_requirements=[_pinned(d) for d in REQUIREMENTS],
                    input_example=example, signature=signature, registered_model_name=name,
                    tags={"nnlab.experiment": name},
                )
        finally:  # the training run's status and end as they were, even if logging failed
            client.set_terminated(run.run_id, run.status, end_time=run.end_time)
    version = str(logged.registered_model_version)
    acc = client.get_run(run.run_id).data.metrics.get(METRIC)
    if acc is not None:  # shown beside the version in the registry
        client.set_model_version_tag(name, version, METRIC, f"{acc:.4f}")
    best = move_alias(name, root)
    info(f"evaluate@{name}: model registered as {name} version {version}; "
         f"alias @{ALIAS} -> version {best}")
    return version


def move_alias(name: str, root: Path = Path(".")) -> str | None:
    """Set alias ``best`` of registered model ``name`` on the version whose run has the
    highest test/acc (on a tie the version holding it keeps it, else the newest)."""
    from mlflow.exceptions import MlflowException

    client = tracking.client(root)
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        return None
    try:
        current = str(client.get_model_version_by_alias(name, ALIAS).version)
    except MlflowException:
        current = None

    def score(v) -> tuple:
        try:
            acc = client.get_run(v.run_id).data.metrics.get(METRIC, float("-inf"))
        except MlflowException:
            acc = float("-inf")  # its run was deleted
        return acc, str(v.version) == current, int(v.version)

    best = max(versions, key=score)
    if str(best.version) != current:
        client.set_registered_model_alias(name, ALIAS, best.version)
    return str(best.version)
