"""Shared fixtures: tiny params and a tiny prepared MNIST project in a temporary directory."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from nnlab.config import Params, parse_params

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

TINY = {
    "seed": 7,
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "log_every_n_steps": 1,
    },
    "data": {"mnist": {"source": "bundled", "max_samples": 400, "test_fraction": 0.25}},
    "experiments": {
        "mnist_mlp": {"dataset": "mnist", "model": "mlp", "epochs": 2, "batch_size": 32,
                      "model_options": {"hidden": 32}},
        "mnist_cnn": {"dataset": "mnist", "model": "cnn_small", "epochs": 2, "batch_size": 32},
    },
}


def tiny_params(**overrides) -> Params:
    """TINY with dotted-key overrides: ``tiny_params(**{"experiments.x.epochs": 3})``."""
    return with_overrides(TINY, **overrides)


def with_overrides(base: dict, **overrides) -> Params:
    """``base`` (not changed) with dotted-key overrides, parsed."""
    raw = copy.deepcopy(base)
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_params(raw)


def copy_repo(work: Path) -> Path:
    """This repository's git-tracked files, copied into ``work`` (a new project folder)."""
    import shutil
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, work / f)
    return work


def params_text(params: Params) -> str:
    """``params`` as a params.yaml would hold them (aliases, no unset optional keys)."""
    import yaml

    return yaml.safe_dump(params.model_dump(mode="json", by_alias=True, exclude_none=True))


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch, tmp_path):
    """Each test gets its own store: never the user's MLFLOW_TRACKING_URI or ./mlruns."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A project directory with tiny MNIST downloaded (bundled sample) and split."""
    from nnlab.stages.download import run as run_download
    from nnlab.stages.split import run as run_split

    root = tmp_path_factory.mktemp("mnist_project")
    params = tiny_params()
    run_download(params, "mnist", root)
    run_split(params, "mnist", root)
    return root


@pytest.fixture
def project(mnist_root, tmp_path) -> Path:
    """A fresh copy of the prepared tiny MNIST project (safe to train in)."""
    import shutil

    root = tmp_path / "project"
    shutil.copytree(mnist_root, root)
    return root
