"""MLflow: where runs go, what they are tagged with, and the run receipt.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set (a team server works unchanged), else a
SQLite store at ``<repo>/mlruns/mlflow.db`` with artifacts under ``<repo>/mlruns/artifacts``
(current MLflow refuses a plain ``./mlruns`` file store). One MLflow experiment per dataset,
one run per training. ``models/<experiment>/run.json`` (the receipt) ties a DVC output to its
MLflow run; evaluate and predict find the run through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from nnlab.files import read_json, write_json

RECEIPT = "run.json"


def tracking_uri(root: Path = Path(".")) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    store = Path(root).resolve() / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def artifact_location(root: Path = Path("."), experiment: str = "") -> str | None:
    """Artifact root for experiments this project creates in its own local store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None  # the server decides
    return (Path(root).resolve() / "mlruns" / "artifacts" / experiment).as_uri()


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
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def make_logger(
    experiment: str,
    dataset: str,
    tags: dict[str, str],
    root: Path = Path("."),
    run_id: str | None = None,
):
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(
        experiment_name=dataset,
        run_name=experiment,
        tracking_uri=tracking_uri(root),
        tags=tags,
        artifact_location=artifact_location(root, dataset),
        run_id=run_id,
        log_model=False,
    )


def write_receipt(model_dir: Path, receipt: dict[str, Any]) -> None:
    write_json(Path(model_dir) / RECEIPT, receipt)


def read_receipt(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / RECEIPT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no run receipt; run `dvc repro train@{Path(model_dir).name}` first"
        )
    return read_json(path)


def receipt_or_empty(model_dir: Path) -> dict[str, Any]:
    try:
        return read_receipt(model_dir)
    except (FileNotFoundError, ValueError):
        return {}


def client(receipt: dict[str, Any] | None = None, root: Path = Path(".")):
    from mlflow.tracking import MlflowClient

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (receipt or {}).get("tracking_uri")
    return MlflowClient(tracking_uri=uri or tracking_uri(root))


def log_to_run(
    receipt: dict[str, Any],
    metrics: dict[str, float] | None = None,
    artifacts: list[Path] | None = None,
    artifact_path: str | None = None,
    tags: dict[str, str] | None = None,
    root: Path = Path("."),
) -> None:
    """Add metrics, tags and files to the run named in a receipt."""
    c = client(receipt, root)
    run_id = receipt["run_id"]
    for key, value in (metrics or {}).items():
        c.log_metric(run_id, key, float(value))
    for key, value in (tags or {}).items():
        c.set_tag(run_id, key, value)
    for path in artifacts or []:
        if Path(path).is_dir():
            c.log_artifacts(run_id, str(path), artifact_path)
        elif Path(path).is_file():
            c.log_artifact(run_id, str(path), artifact_path)
