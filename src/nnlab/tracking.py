"""MLflow: where runs go, what they are tagged with, and the run receipt.

Where runs go is decided afresh by every process, never read from a file:

* ``MLFLOW_TRACKING_URI`` when set (a team server: every clone and node writes there);
* else the project's own SQLite store ``<project>/mlruns/mlflow.db`` with artifacts under
  ``<project>/mlruns/artifacts`` (current MLflow refuses a plain ``./mlruns`` file store).
  ``<project>`` is the working copy, except inside a DVC temporary experiment workspace
  (``dvc exp run --queue`` / ``--temp`` run in ``<repo>/.dvc/tmp/exps/...``, deleted afterwards):
  there it is the original repository, so queued runs land in the project's store.

Only global rank 0 touches the store (creating it, runs, artifacts); the other ranks of a
DDP run, on every node, never create anything. The first creation of the SQLite store is
serialised by an exclusive lock on ``mlruns/.lock``: queued jobs and nodes start at once.

One MLflow experiment per dataset, one run per training. ``models/<experiment>/run.json``
(the receipt, cached by DVC) ties a checkpoint to its MLflow run with portable fields only
(run id, experiment name and id, params hash, status, ...): no path, no URI.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nnlab.files import read_json, write_json
from nnlab.log import info

RECEIPT = "run.json"
STORE = "mlruns"
# The experiment tag MLflow 3.x's UI reads to pick an experiment's view (mlflow/server/js
# bundle: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"; without it
# new experiments open in the GenAI view).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# global rank, node rank and local rank as torchrun, SLURM and Lightning's launcher set them
RANK_VARS = ("RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK")
LOCAL = ("tracking_uri", "artifact_uri")  # where a store was on the machine that trained
_READY: set[str] = set()  # stores this process has already created or verified


def is_global_zero_env() -> bool:
    """True on global rank 0 before any Trainer exists (and in a plain single process).

    Any rank variable that is set and non-zero means another process: ``RANK``/``GROUP_RANK``/
    ``LOCAL_RANK`` (torchrun), ``SLURM_PROCID`` (srun), ``NODE_RANK``/``LOCAL_RANK``
    (Lightning's own launcher and multi-node runs).
    """
    return all(os.environ.get(k, "0").strip() in ("", "0") for k in RANK_VARS)


def project_root(root: Path = Path(".")) -> Path:
    """The repository whose ``mlruns/`` holds this working copy's runs.

    Inside a DVC temporary experiment workspace that is the original repository: DVC passes
    it as ``DVC_ROOT`` to queued and ``--temp`` runs, and the workspace is a folder under
    ``<repo>/.dvc/tmp/exps/``. ``DVC_ROOT`` is trusted only when ``root`` lies in that
    folder, so a stray variable never sends a clone's runs into another clone's store.
    """
    here = Path(root).resolve()
    origin = os.environ.get("DVC_ROOT")
    if origin and here.is_relative_to(Path(origin).resolve() / ".dvc" / "tmp" / "exps"):
        return Path(origin).resolve()
    parts = here.parts
    for i in range(len(parts) - 3, 0, -1):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def store_dir(root: Path = Path(".")) -> Path:
    return project_root(root) / STORE


def resolve_uri(root: Path = Path(".")) -> str:
    """``MLFLOW_TRACKING_URI``, else the project's SQLite store; creates nothing."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_dir(root) / 'mlflow.db'}"


def tracking_uri(root: Path = Path(".")) -> str:
    """:func:`resolve_uri`, with the local store created on global rank 0 (only there)."""
    uri = resolve_uri(root)
    if uri.startswith("sqlite:///") and is_global_zero_env():
        ensure_store(uri, store_dir(root))
    return uri


def ensure_store(uri: str, store: Path) -> None:
    """Create (or migrate) the SQLite store once, holding ``store/.lock`` exclusively, so that
    parallel jobs never race on the schema (``duplicate column name``)."""
    if uri in _READY:
        return
    store.mkdir(parents=True, exist_ok=True)
    with _locked(store / ".lock"):
        _client(uri).search_experiments(max_results=1)  # builds the schema
    _READY.add(uri)


@contextmanager
def _locked(path: Path):
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def artifact_location(root: Path = Path("."), experiment: str = "") -> str | None:
    """Artifact root for experiments this project creates in its own local store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None  # the server decides (proxied with --serve-artifacts)
    return (store_dir(root) / "artifacts" / experiment).as_uri()


def receipt_or_empty(model_dir: Path) -> dict[str, Any]:
    try:
        return read_receipt(model_dir)
    except (FileNotFoundError, ValueError):
        return {}


def client(root: Path = Path(".")):
    """A client on the store this process resolves now (never one named in a receipt); its
    Model Registry is that store too (not a registry URI set earlier in this process)."""
    return _client(tracking_uri(root))


@functools.cache
def _client(uri: str):
    """One client per store and process: opening a SQLite store (engine, schema check) costs
    about a second, so a stage that logs several times opens it once."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(name: str, root: Path = Path(".")) -> str:
    """The id of MLflow experiment ``name``, created if missing, marked as model training."""
    from mlflow.exceptions import MlflowException

    c = client(root)
    found = c.get_experiment_by_name(name)
    if found is None:
        try:
            exp_id = c.create_experiment(name, artifact_location=artifact_location(root, name))
        except MlflowException:  # another job created it a moment ago
            found = c.get_experiment_by_name(name)
            if found is None:
                raise
    if found is not None:
        exp_id = found.experiment_id
    if found is None or found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        c.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp_id


def git_info(root: Path = Path(".")) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {"git.commit": commit, "git.dirty": str(dirty).lower()}


def params_hash(flat: dict[str, Any]) -> str:
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_tags(experiment: str, dataset: str, data_source: str, root: Path) -> dict[str, str]:
    tags = {
        "nnlab.experiment": experiment,
        "nnlab.dataset": dataset,
        "data.source": data_source,
        **git_info(root),
    }
    if os.environ.get("DVC_EXP_NAME"):  # set by dvc exp run (workspace, --temp and --queue)
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.exp_baseline"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def make_logger(
    experiment: str,
    dataset: str,
    tags: dict[str, str],
    root: Path = Path("."),
    run_id: str | None = None,
):
    """Lightning's MLFlowLogger for one training (pass it as ``Trainer(logger=...)``).

    On rank 0 the experiment is created (and tagged) here; a ``run_id`` to resume that this
    store does not hold starts a new run. Other ranks get ``False`` (no logger): even
    constructing an MLflow client creates a SQLite store, which they must never do.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    if not is_global_zero_env():
        return False
    ensure_experiment(dataset, root)
    if run_id is not None and not run_exists(run_id, root):
        info(f"MLflow run {run_id} is not in {redacted_uri(root)}: starting a new run")
        run_id = None
    return MLFlowLogger(
        experiment_name=dataset,
        run_name=experiment,
        tracking_uri=tracking_uri(root),
        tags=tags,
        artifact_location=artifact_location(root, dataset),
        run_id=run_id,
        log_model=False,
    )


def redacted_uri(root: Path = Path(".")) -> str:
    """The tracking URI for messages, without the credentials a server URI may carry."""
    from urllib.parse import urlsplit

    uri = resolve_uri(root)
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.hostname}{port}").geturl()


def run_exists(run_id: str, root: Path = Path(".")) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client(root).get_run(run_id)
    except MlflowException:
        return False
    return True


def write_receipt(model_dir: Path, receipt: dict[str, Any]) -> None:
    """Write ``run.json`` without the fields that would tie it to one machine's store."""
    write_json(Path(model_dir) / RECEIPT, {k: v for k, v in receipt.items() if k not in LOCAL})


def read_receipt(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / RECEIPT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no run receipt; run `dvc repro train@{Path(model_dir).name}` first"
        )
    return read_json(path)


def log_to_run(
    receipt: dict[str, Any],
    metrics: dict[str, float] | None = None,
    artifacts: list[Path] | None = None,
    artifact_path: str | None = None,
    tags: dict[str, str] | None = None,
    root: Path = Path("."),
) -> bool:
    """Add metrics, tags and files to the run named in a receipt; False (one warning line)
    when the resolved store does not hold that run: a checkpoint pulled from a DVC remote
    into another clone or machine was trained against another store. Its files (metrics.json,
    figures) are still written by the caller; a new run holding only evaluation numbers
    would look like a complete training run, so none is made. Rank 0 only."""
    if not is_global_zero_env():
        return False
    run_id = receipt.get("run_id")
    if not run_id or not run_exists(run_id, root):
        info(
            f"warning: MLflow run {run_id} (models/{receipt.get('experiment', '?')}/{RECEIPT}) "
            f"is not in {redacted_uri(root)}: nothing logged there (set MLFLOW_TRACKING_URI to the "
            "store that trained it, or retrain here)"
        )
        return False
    c = client(root)
    for key, value in (metrics or {}).items():
        c.log_metric(run_id, key, float(value))
    for key, value in (tags or {}).items():
        c.set_tag(run_id, key, value)
    for path in artifacts or []:
        if Path(path).is_dir():
            c.log_artifacts(run_id, str(path), artifact_path)
        elif Path(path).is_file():
            c.log_artifact(run_id, str(path), artifact_path)
    return True


# ---------------------------------------------------------------- dataset inputs of a run

DATASET_CONTEXT = "mlflow.data.context"  # mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT


def dataset_source(raw_manifest: dict[str, Any]):
    """Where a dataset came from, as an MLflow DatasetSource: the user's local ``path``, the
    URL it was downloaded from, or (offline fallback, bundled sample) the generator's name."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if raw_manifest.get("path"):  # (as recorded; a relative one is the project's)
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():  # MLflow registers its local source twice and says so
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(Path(raw_manifest["path"]).absolute().as_uri())
    urls = [f.get("url", "") for f in raw_manifest.get("files", {}).values()
            if isinstance(f, dict)]
    for url in urls:
        if url.startswith(("http://", "https://")):
            return HTTPDatasetSource(url)
    return CodeDatasetSource({k: str(raw_manifest[k]) for k in ("source", "fallback_reason")
                              if k in raw_manifest})


def _split_dataset(name: str, digest: str, source, arrays: dict[str, Any]):
    """An MLflow MetaDataset of one split: its digest, a tensor schema, its size as profile."""
    import numpy as np
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import Schema, TensorSpec

    class SplitDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": len(arrays["y"])}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    schema = Schema([TensorSpec(np.dtype(a.dtype), (-1, *a.shape[1:]), key)
                     for key, a in sorted(arrays.items())])
    return SplitDataset(source, name=name, digest=digest, schema=schema)


def log_datasets(run_id: str, dataset: str, root: Path = Path(".")) -> list[str]:
    """Log the train, val and test splits of ``data/split/<dataset>`` as the run's dataset
    inputs (context tag train/val/test), with the split manifest's digests. For a derived
    dataset (a features cache) the source is that of the dataset it was made from. Returns
    the digests in split order; nothing on ranks other than 0."""
    from mlflow.entities import DatasetInput, InputTag

    from nnlab import paths
    from nnlab.data.prepare import SPLITS, load_arrays, load_meta, split_digest, split_digests

    if not is_global_zero_env():
        return []
    meta = load_meta(dataset, root)
    recorded = split_digests(dataset, root)
    origin = meta.get("derived", {}).get("from", dataset)
    raw_file = paths.raw_dir(origin, root) / paths.MANIFEST
    source = dataset_source(read_json(raw_file) if raw_file.is_file() else {
        "source": meta.get("source", "unknown")})
    tags = {"nnlab.kind": meta["kind"], "nnlab.source": str(meta.get("source", "unknown"))}
    if origin != dataset:
        tags["nnlab.derived_from"] = origin
    inputs, digests = [], []
    for split in SPLITS:
        arrays = load_arrays(dataset, split, root)
        digest = recorded.get(split) or split_digest(arrays)
        ds = _split_dataset(dataset, digest, source, arrays)
        extra = {**tags, "nnlab.samples": str(len(arrays["y"]))}
        inputs.append(DatasetInput(ds._to_mlflow_entity(), tags=[
            InputTag(DATASET_CONTEXT, split), *(InputTag(k, v) for k, v in extra.items())]))
        digests.append(digest)
    client(root).log_inputs(run_id, datasets=inputs)
    return digests
