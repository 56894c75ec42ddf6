"""MLflow on rank 0 only: the store (MLFLOW_TRACKING_URI or ``mlruns/``), tags, inputs, receipt."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow.data
from mlflow.data.sources import CodeDatasetSource, HTTPDatasetSource, LocalArtifactDatasetSource
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from nnlab import paths
from nnlab.data.prepare import load_arrays, load_meta, split_digests
from nnlab.files import read_json, regular_file, write_json
from nnlab.log import info, one_line

# read by MLflow 3's UI: open the experiment on its runs, not on traces (the GenAI view)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# global, node and local rank (torchrun, SLURM, Lightning); the waits unless the user set them
RANK_VARS = ("RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK")
WAITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}


def is_global_zero_env() -> bool:
    """True on global rank 0 before any Trainer exists: no rank variable is set but to 0."""
    return all(os.environ.get(k, "0").strip() in ("", "0") for k in RANK_VARS)


def project_root(root: Path = Path(".")) -> Path:
    """The repository whose ``mlruns/`` is used: in ``<repo>/.dvc/tmp/exps/...``, ``<repo>``."""
    repo, found, _ = f"{Path(root).resolve()}/".rpartition("/.dvc/tmp/exps/")
    return Path(repo) if found else Path(root).resolve()


def tracking_uri(root: Path = Path("."), create: bool = True) -> str:
    """``MLFLOW_TRACKING_URI``, else the local store (``create``: made on rank 0); WAITS set."""
    for key, value in WAITS.items():
        os.environ.setdefault(key, value)
    store = project_root(root) / paths.MLRUNS / paths.STORE_DB
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store}"
    if create and is_global_zero_env():
        _client(uri)
    return uri


def redacted_uri(root: Path = Path(".")) -> str:
    """The tracking URI for messages, without the credentials a server URI may carry."""
    return re.sub(r"://[^/@]*@", "://", tracking_uri(root, create=False))


@contextlib.contextmanager
def answered():
    """A tracking server's failure as one RuntimeError naming it without credentials."""
    try:
        yield
    except MlflowException as err:
        server = redacted_uri()
        if isinstance(err.__cause__ or err.__context__, OSError):  # requests' errors
            waits = ", ".join(f"{k}={os.environ.get(k)}" for k in WAITS)
            raise RuntimeError(
                f"MLflow tracking server {server} did not answer "
                f"({waits}): start it, or unset MLFLOW_TRACKING_URI"
            ) from err
        if not server.startswith(("http://", "https://")):
            raise
        raise RuntimeError(f"MLflow tracking server {server} failed: {one_line(err, 200)}") from err


def artifact_location(root: Path = Path("."), experiment: str = "") -> str | None:
    """Artifact root of an experiment in the local store (None: a server decides)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (project_root(root) / paths.MLRUNS / paths.STORE_ARTIFACTS / experiment).as_uri()


def check_inside(location: str, root: Path = Path(".")) -> None:
    """RuntimeError unless a local store's ``location`` is in ``mlruns/`` (not a moved store's)."""
    url = urlparse(location)
    if os.environ.get("MLFLOW_TRACKING_URI") or url.scheme not in ("", "file"):
        return
    store = project_root(root) / paths.MLRUNS
    where = Path(url2pathname(url.path))
    if not where.resolve().is_relative_to(store.resolve()):
        raise RuntimeError(
            f"{store / paths.STORE_DB}: keeps artifacts in {where}, outside this project (mlruns/ "
            "moved or copied?): move it aside to start a new store, or set MLFLOW_TRACKING_URI"
        )


def client(root: Path = Path(".")):
    return _client(tracking_uri(root))


@functools.cache
def _client(uri: str):
    """One client per store; a local store created under a lock (parallel jobs race on it)."""
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / paths.STORE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            c = MlflowClient(tracking_uri=uri, registry_uri=uri)
            c.search_experiments(max_results=1)
        except Exception as err:
            if not isinstance(err.__cause__, sqlite3.DatabaseError):  # SQLAlchemy's, wrapped
                raise
            raise RuntimeError(
                f"{db}: not a readable MLflow store ({err.__cause__}); move it aside to start anew"
            ) from None
    return c


def ensure_experiment(name: str, root: Path = Path(".")) -> str:
    """The id of MLflow experiment ``name``, created if missing, marked as model training."""
    c = client(root)
    if not c.get_experiment_by_name(name):
        with contextlib.suppress(MlflowException):  # another job created it a moment ago
            c.create_experiment(name, artifact_location=artifact_location(root, name))
    found = c.get_experiment_by_name(name)
    check_inside(found.artifact_location, root)
    c.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return found.experiment_id


def params_hash(flat: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_tags(experiment: str, dataset: str, data_source: str, root: Path) -> dict[str, str]:
    """The run's tags: names, data source, git commit and state, and a ``dvc exp run``'s."""
    tags = {"nnlab.experiment": experiment, "nnlab.dataset": dataset, "data.source": data_source}
    try:
        commit, status = (
            subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "-uno"])
        )
        tags.update({"git.commit": commit, "git.dirty": str(bool(status)).lower()})
    except (OSError, subprocess.SubprocessError):
        tags.update({"git.commit": "unknown", "git.dirty": "unknown"})
    dvc = {"dvc.exp_name": "DVC_EXP_NAME", "dvc.exp_baseline": "DVC_EXP_BASELINE_REV"}
    return tags | {k: os.environ[v] for k, v in dvc.items() if os.environ.get(v)}


@answered()
def make_logger(experiment: str, dataset: str, tags: dict[str, str], root=Path("."), run_id=None):
    """Lightning's MLFlowLogger (a ``run_id`` the store lacks: a new run); False on other ranks."""
    from lightning.pytorch.loggers import MLFlowLogger  # not for `nnlab ui`

    if not is_global_zero_env():
        return False
    ensure_experiment(dataset, root)
    if run_id is not None and find_run(run_id, root) is None:
        info(f"MLflow run {run_id} is not in {redacted_uri(root)}: starting a new run")
        run_id = None
    return MLFlowLogger(
        experiment_name=dataset,
        run_name=experiment,
        tags=tags,
        tracking_uri=tracking_uri(root),
        run_id=run_id,
    )


def find_run(run_id: str, root: Path = Path(".")):
    """The run, or None when the store does not hold it (a store that does not answer raises)."""
    try:
        return client(root).get_run(run_id)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def write_receipt(model_dir: Path, receipt: dict[str, Any]) -> None:
    write_json(Path(model_dir) / paths.RECEIPT, receipt)


def read_receipt(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / paths.RECEIPT
    receipt = read_json(path) if path.exists() else None
    if not isinstance(receipt, dict) or not isinstance(receipt.get("run_id"), str):
        hint = f"run `dvc repro train@{path.parent.name}`"
        raise ValueError(f"{path}: not a run receipt (missing, or no run_id): {hint}")
    return receipt


def receipt_or_empty(model_dir: Path) -> dict[str, Any]:
    try:
        return read_receipt(model_dir)
    except (FileNotFoundError, ValueError):
        return {}


@answered()
def log_to_run(
    receipt: dict, metrics: dict | None = None, artifacts=(), artifact_path=None, root=Path(".")
) -> Any:
    """Add metrics and files to the receipt's run: the run, or None (rank not 0, or not found)."""
    if not is_global_zero_env():
        return None
    run_id = receipt.get("run_id")
    run = find_run(run_id, root) if run_id else None
    if run is None:
        info(
            f"warning: MLflow run {run_id} (models/{receipt.get('experiment', '?')}/"
            f"{paths.RECEIPT}) is not in {redacted_uri(root)}: nothing logged there (set "
            "MLFLOW_TRACKING_URI to the store that trained it, or retrain here)"
        )
        return None
    check_inside(run.info.artifact_uri, root)
    c = client(root)
    uploads = [p for p in map(Path, artifacts) if p.exists()]
    for path in uploads:  # MLflow would copy a FIFO or a device forever: refused first
        for file in path.rglob("*") if path.is_dir() else [path]:
            if not file.is_dir():
                regular_file(file)
    for key, value in (metrics or {}).items():
        c.log_metric(run_id, key, float(value))
    for path in uploads:
        (c.log_artifacts if path.is_dir() else c.log_artifact)(run_id, str(path), artifact_path)
    return run


def dataset_source(raw_manifest: dict[str, Any]):
    """A dataset's MLflow source: the user's ``path``, the URL, or the substitute's generator."""
    if raw_manifest.get("path"):
        return LocalArtifactDatasetSource(Path(raw_manifest["path"]).absolute().as_uri())
    files = [f for f in raw_manifest.get("files", {}).values() if isinstance(f, dict)]
    urls = [u for f in files if str(u := f.get("url", "")).startswith(("http://", "https://"))]
    if urls:
        return HTTPDatasetSource(urls[0])
    keys = ("source", "fallback_reason")
    return CodeDatasetSource({k: str(raw_manifest[k]) for k in keys if k in raw_manifest})


@answered()
def log_datasets(run_id: str, dataset: str, root: Path = Path(".")) -> None:
    """The splits as the run's dataset inputs, with their digests (a cache: its origin's source)."""
    meta, digests = load_meta(dataset, root), split_digests(dataset, root)
    origin = meta.get("derived", {}).get("from", dataset)
    raw = paths.raw_dir(origin, root) / paths.MANIFEST
    unknown = {"source": meta.get("source", "unknown")}
    source = dataset_source(read_json(raw) if raw.is_file() else unknown)
    tags = {"nnlab.kind": meta["kind"], "nnlab.source": str(unknown["source"])}
    if origin != dataset:
        tags["nnlab.derived_from"] = origin
    inputs = []
    for split in paths.SPLITS:
        arrays = load_arrays(dataset, split, root)
        y = arrays.pop("y")
        ds = mlflow.data.from_numpy(
            arrays, source=source, targets=y, name=dataset, digest=digests.get(split)
        )
        split_tags = {MLFLOW_DATASET_CONTEXT: split, **tags, "nnlab.samples": str(len(y))}
        inputs.append(
            DatasetInput(Dataset(**ds.to_dict()), [InputTag(k, v) for k, v in split_tags.items()])
        )
    client(root).log_inputs(run_id, datasets=inputs)
