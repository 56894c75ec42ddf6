"""Shared fixtures: tiny params and a tiny prepared MNIST project in a temporary directory."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
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
    "data": {
        "mnist": {"kind": "mnist", "source": "bundled", "max_samples": 400, "test_fraction": 0.25}
    },
    "experiments": {
        "mnist_mlp": {
            "dataset": "mnist",
            "model": "mlp",
            "epochs": 2,
            "batch_size": 32,
            "model_options": {"hidden": 32},
        },
        "mnist_cnn": {"dataset": "mnist", "model": "cnn_small", "epochs": 2, "batch_size": 32},
    },
}


def with_overrides(base: dict, **overrides) -> Params:
    """``base`` (not changed) with dotted-key overrides, parsed."""
    raw = copy.deepcopy(base)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        functools.reduce(lambda node, key: node.setdefault(key, {}), parents, raw)[leaf] = value
    return parse_params(raw)


def tiny_params(**overrides) -> Params:
    """TINY with dotted-key overrides: ``tiny_params(**{"experiments.x.epochs": 3})``."""
    return with_overrides(TINY, **overrides)


BIN = Path(sys.executable).parent  # the venv's nnlab and dvc
# a tracking server, a DVC experiment, a DDP rank: never inherited by a CLI subprocess
UNSET = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE", "WORLD_SIZE")
UNSET += ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def cli_env(**extra: str) -> dict[str, str]:
    """A CLI subprocess's environment: the venv first, a git identity, one thread, no UNSET."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    for who in ("AUTHOR", "COMMITTER"):
        env.update({f"GIT_{who}_NAME": "nnlab-test", f"GIT_{who}_EMAIL": "test@nnlab.invalid"})
    return {**env, **extra}


def run_ok(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    """stdout + stderr of a command that must succeed (its output tail otherwise)."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def stages_ran(dvc_output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", dvc_output))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_dev_fit(params: Params, name: str, root: Path):
    """(trainer, model, datamodule) after one train and one val batch of experiment ``name``,
    through the pipeline's DataModule and Classifier."""
    import lightning as L

    from nnlab.data.datamodule import ArrayDataModule
    from nnlab.stages.train import build_classifier

    exp = params.experiment(name)
    dm = ArrayDataModule(exp.dataset, exp, params.loader, params.seed, root)
    model = build_classifier(params, name, dm.meta, "test")
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and float(trainer.callback_metrics["train/loss"]) > 0
    return trainer, model, dm


def copy_repo(work: Path) -> Path:
    """This repository's git-tracked files, copied into ``work`` (a new project folder)."""
    for f in subprocess.check_output(["git", "ls-files"], cwd=REPO, text=True).split():
        if (REPO / f).is_file():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, work / f)
    return work


def params_text(params: Params) -> str:
    """``params`` as a params.yaml would hold them (aliases, no unset optional keys)."""
    import yaml

    return yaml.safe_dump(params.model_dump(mode="json", by_alias=True, exclude_none=True))


@pytest.fixture(scope="session")
def _jobs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch, tmp_path, _jobs):
    """Each test gets its own store (never the user's MLFLOW_TRACKING_URI or ./mlruns); the
    tests have their own job registry (other jobs on the machine would change thread counts)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("NNLAB_JOBS_DIR", str(_jobs))
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
    root = tmp_path / "project"
    shutil.copytree(mnist_root, root)
    return root
