"""Where MLflow runs go: resolved afresh by each process, never from a receipt; rank 0 only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

import nnlab.stages.evaluate
from nnlab import tracking
from nnlab.stages.evaluate import run as evaluate
from nnlab.stages.train import run as train
from tests.conftest import REPO, tiny_params
from tests.http_server import raw_server


@pytest.fixture(autouse=True)
def _plain_process(monkeypatch):
    """A single, non-DVC process unless a test says otherwise."""
    for var in (*tracking.RANK_VARS, "DVC_ROOT", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)


def test_receipt_is_portable_and_another_clone_uses_its_own_store(
    project, tmp_path, monkeypatch, capsys
):
    """A receipt holds no local path; pulled into another clone its checkpoint evaluates there,
    says its run is not in that store, and logs nothing anywhere."""
    train(tiny_params(**{"experiments.mnist_mlp.epochs": 1}), "mnist_mlp", project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLFlowLogger sets it
    text = (project / "models/mnist_mlp/run.json").read_text()
    assert str(project.resolve()) not in text and '"/' not in text and "sqlite:" not in text
    monkeypatch.setattr(nnlab.stages.evaluate, "_figures", lambda *a, **k: None)
    clone = tmp_path / "clone2"
    shutil.copytree(project, clone, ignore=shutil.ignore_patterns("mlruns"))  # as `dvc pull`
    first_db = project / "mlruns/mlflow.db"
    before = first_db.stat().st_mtime_ns, first_db.stat().st_size
    receipt = tracking.read_receipt(clone / "models/mnist_mlp")
    capsys.readouterr()
    assert 0 <= evaluate(tiny_params(), "mnist_mlp", clone)["test/acc"] <= 1
    warned = [line for line in capsys.readouterr().err.splitlines() if "is not in" in line]
    assert len(warned) == 2 and receipt["run_id"] in warned[0]  # the files, the model
    assert (first_db.stat().st_mtime_ns, first_db.stat().st_size) == before
    assert tracking.client(clone).search_runs(["0"]) == []
    assert tracking.client(clone).search_registered_models() == []
    # the clone that trained it still logs into its own run
    assert tracking.log_to_run(receipt, metrics={"test/acc": 0.5}, root=project) is not None
    assert tracking.client(project).get_run(receipt["run_id"]).data.metrics["test/acc"] == 0.5


def test_where_runs_go_dvc_temp_workspace_stray_dvc_root_and_server(tmp_path, monkeypatch):
    repo, other = tmp_path / "repo", tmp_path / "other"
    temp = repo / ".dvc/tmp/exps/tmpk3j2_x"
    temp.mkdir(parents=True)
    other.mkdir()
    assert tracking.project_root(temp / "sub") == repo.resolve()  # DVC_ROOT or not
    monkeypatch.setenv("DVC_ROOT", str(repo))
    assert tracking.tracking_uri(temp) == f"sqlite:///{repo.resolve()}/mlruns/mlflow.db"
    assert (repo / "mlruns/mlflow.db").is_file() and not (temp / "mlruns").exists()
    assert tracking.artifact_location(temp, "mnist") == (repo / "mlruns/artifacts/mnist").as_uri()
    # a stray DVC_ROOT never redirects another clone (the usual `dvc repro` case too)
    monkeypatch.setenv("DVC_ROOT", str(other))
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert not (other / "mlruns").exists()
    # a server's URI wins, and nothing is created locally
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri(other) == "http://127.0.0.1:5999"
    assert tracking.artifact_location(other, "mnist") is None
    assert not (other / "mlruns").exists()


def test_experiments_are_marked_and_a_run_the_store_lacks_starts_anew(
    tmp_path, monkeypatch, capsys
):
    """The kind MLflow 3's UI reads to show an experiment's runs, not its GenAI view."""
    monkeypatch.chdir(tmp_path)  # where MLflow puts the artifacts of an experiment made by hand
    exp_id = tracking.ensure_experiment("mnist", tmp_path)
    c = tracking.client(tmp_path)
    assert c.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment someone made before (no kind) is marked when nnlab reuses it
    old = c.create_experiment("imdb")
    assert tracking.ensure_experiment("imdb", tmp_path) == old
    assert c.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    assert tracking.ensure_experiment("mnist", tmp_path) == exp_id
    logger = tracking.make_logger("mnist_mlp", "mnist", {}, tmp_path, run_id="0" * 32)
    assert logger.run_id != "0" * 32 and "starting a new run" in capsys.readouterr().err


def _silent(conn, stop) -> None:
    stop.wait()  # accepts, never answers


LOGIN = b"HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n<html>a login page</html>"


@pytest.mark.parametrize(
    ("reply", "timeout", "bound", "says"),
    [
        (_silent, "1", 10, "did not answer (MLFLOW_HTTP_REQUEST_TIMEOUT="),  # the user's bound
        pytest.param(_silent, None, 30, "did not answer", marks=pytest.mark.slow),  # nnlab's
        (LOGIN, "1", 10, "failed: "),  # a server that is not MLflow
    ],
)
def test_a_server_that_fails_is_one_bounded_line_naming_it(
    tmp_path, monkeypatch, reply, timeout, bound, says
):
    """MLflow's own timeouts bound the wait; the error names the server without credentials."""
    for var in tracking.WAITS:
        monkeypatch.delenv(var, raising=False)
    if timeout:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", timeout)
    with raw_server(reply) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url.replace("//", "//bob:secret@"))
        start = time.monotonic()
        with pytest.raises(RuntimeError) as err:
            tracking.make_logger("mnist_mlp", "mnist", {}, tmp_path)
        assert time.monotonic() - start < bound
    message = str(err.value)
    assert message.startswith(f"MLflow tracking server {url} {says}")
    assert reply != LOGIN or "login page" in message
    assert "secret" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        (dict.fromkeys(tracking.RANK_VARS, "0"), True),
        *(({var: "1"}, False) for var in tracking.RANK_VARS),  # torchrun, SLURM, Lightning
    ],
)
def test_only_global_rank_zero_tracks(tmp_path, monkeypatch, env, zero):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert tracking.is_global_zero_env() is zero
    if not zero:
        assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
        assert tracking.log_to_run({"run_id": "abc"}, metrics={"x": 1.0}, root=tmp_path) is None
        assert tracking.make_logger("mnist_mlp", "mnist", {}, tmp_path) is False  # logger=False
        assert list(tmp_path.iterdir()) == []


def test_parallel_jobs_create_one_store_without_a_schema_race(tmp_path):
    """Without the lock, MLflow's migrations race: `duplicate column name: step`."""
    code = (
        "import sys; from pathlib import Path; from nnlab import tracking;"
        "print(tracking.ensure_experiment('mnist', Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-c", code, str(tmp_path)]
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(cmd, env=env, text=True, stdout=pipe, stderr=pipe) for _ in range(3)]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1
    assert len(tracking.client(tmp_path).search_experiments()) == 2  # Default + mnist
