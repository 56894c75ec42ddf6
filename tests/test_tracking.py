"""Where MLflow runs go: resolved afresh by each process, never from a receipt; rank 0 only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nnlab import tracking
from nnlab.files import read_json
from tests.conftest import REPO, tiny_params


@pytest.fixture(autouse=True)
def _plain_process(monkeypatch):
    """A single, non-DVC process unless a test says otherwise."""
    for var in (*tracking.RANK_VARS, "DVC_ROOT", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)


def _values(obj) -> list[str]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _values(x)]
    return [str(obj)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_root) -> Path:
    """A project where mnist_mlp was trained for one epoch (its own store in mlruns/)."""
    root = tmp_path_factory.mktemp("trained") / "clone1"
    shutil.copytree(mnist_root, root)
    from nnlab.stages.train import run as train

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        train(tiny_params(**{"experiments.mnist_mlp.epochs": 1}), "mnist_mlp", root)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return root


def test_receipt_holds_no_path_of_this_machine(trained):
    receipt = read_json(trained / "models/mnist_mlp/run.json")
    assert "tracking_uri" not in receipt
    assert receipt["status"] == "FINISHED" and receipt["run_id"]
    here = str(trained.resolve())
    assert not [v for v in _values(receipt) if here in v or v.startswith(("/", "sqlite:"))]


def test_write_receipt_drops_store_locations(tmp_path):
    tracking.write_receipt(tmp_path, {"run_id": "abc", "tracking_uri": "sqlite:////x/mlflow.db"})
    assert read_json(tmp_path / tracking.RECEIPT) == {"run_id": "abc"}


def test_second_clone_uses_its_own_store_and_never_the_first(trained, tmp_path, capsys):
    clone = tmp_path / "clone2"
    shutil.copytree(trained, clone, ignore=shutil.ignore_patterns("mlruns"))  # as `dvc pull`
    first_db = trained / "mlruns/mlflow.db"
    before = first_db.stat().st_mtime_ns, first_db.stat().st_size
    receipt = tracking.read_receipt(clone / "models/mnist_mlp")

    assert tracking.tracking_uri(clone) == f"sqlite:///{clone.resolve()}/mlruns/mlflow.db"
    capsys.readouterr()
    logged = tracking.log_to_run(receipt, metrics={"test/acc": 0.5}, root=clone)
    assert logged is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and receipt["run_id"] in err[0] and "not in" in err[0]
    assert (first_db.stat().st_mtime_ns, first_db.stat().st_size) == before
    assert tracking.client(clone).search_runs(["0"]) == []

    # the clone that trained it still logs into its own run
    assert tracking.log_to_run(receipt, metrics={"test/acc": 0.5}, root=trained) is True
    assert tracking.client(trained).get_run(receipt["run_id"]).data.metrics["test/acc"] == 0.5


def test_evaluate_in_a_second_clone_does_not_crash(trained, tmp_path):
    from nnlab.stages.evaluate import run as evaluate

    clone = tmp_path / "clone2"
    shutil.copytree(trained, clone, ignore=shutil.ignore_patterns("mlruns"))
    metrics = evaluate(tiny_params(), "mnist_mlp", clone)
    assert 0 <= metrics["test/acc"] <= 1
    assert (clone / "reports/experiments/mnist_mlp/metrics.json").is_file()


def test_dvc_temp_workspace_resolves_to_the_original_repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    temp = repo / ".dvc/tmp/exps/tmpk3j2_x"
    temp.mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    assert tracking.project_root(temp) == repo.resolve()
    assert tracking.tracking_uri(temp) == f"sqlite:///{repo.resolve()}/mlruns/mlflow.db"
    assert (repo / "mlruns/mlflow.db").is_file() and not (temp / "mlruns").exists()
    assert tracking.artifact_location(temp, "mnist") == (repo / "mlruns/artifacts/mnist").as_uri()
    # the path shape alone is enough (celery queue workers, DVC_ROOT lost)
    monkeypatch.delenv("DVC_ROOT")
    assert tracking.project_root(temp / "sub") == repo.resolve()


def test_a_stray_dvc_root_never_redirects_another_clone(tmp_path, monkeypatch):
    other, mine = tmp_path / "other", tmp_path / "mine"
    other.mkdir()
    mine.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(other))
    assert tracking.project_root(mine) == mine.resolve()  # the usual `dvc repro` case too
    assert tracking.tracking_uri(mine).endswith(f"{mine.resolve()}/mlruns/mlflow.db")
    assert not (other / "mlruns").exists()


def test_server_uri_wins_and_creates_nothing_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5999"
    assert tracking.artifact_location(tmp_path, "mnist") is None
    assert not (tmp_path / "mlruns").exists()


def test_experiments_are_marked_as_model_training(tmp_path):
    from mlflow.tracking import MlflowClient

    exp_id = tracking.ensure_experiment("mnist", tmp_path)
    c = tracking.client(tmp_path)
    assert c.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment someone made before (no kind) is marked when nnlab reuses it
    raw = MlflowClient(tracking.tracking_uri(tmp_path))
    old = raw.create_experiment("imdb")
    assert "mlflow.experimentKind" not in raw.get_experiment(old).tags
    assert tracking.ensure_experiment("imdb", tmp_path) == old
    assert c.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    assert tracking.ensure_experiment("mnist", tmp_path) == exp_id


def test_the_tag_name_is_the_one_mlflow_reads():
    """Checked against MLflow's own UI bundle: the tag and value it compares with."""
    import mlflow

    js = Path(mlflow.__file__).parent / "server/js/build/static/js"
    text = "".join(p.read_text(errors="ignore") for p in js.glob("main.*.js"))
    if not text:
        pytest.skip("this MLflow ships no UI bundle")
    assert f'"{tracking.EXPERIMENT_KIND_TAG}"' in text
    assert f'CUSTOM_MODEL_DEVELOPMENT="{tracking.EXPERIMENT_KIND}"' in text


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0"}, True),
        ({"NODE_RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"SLURM_PROCID": "0"}, True),
        ({"RANK": "3", "LOCAL_RANK": "1"}, False),
        ({"NODE_RANK": "1"}, False),
        ({"LOCAL_RANK": "1"}, False),
        ({"SLURM_PROCID": "2"}, False),
        ({"GROUP_RANK": "1", "LOCAL_RANK": "0"}, False),
    ],
)
def test_global_zero_from_the_environment(monkeypatch, env, zero):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert tracking.is_global_zero_env() is zero


@pytest.mark.parametrize("var", ["NODE_RANK", "RANK", "SLURM_PROCID", "LOCAL_RANK"])
def test_non_zero_rank_creates_nothing(tmp_path, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    uri = tracking.tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert tracking.log_to_run({"run_id": "abc"}, metrics={"x": 1.0}, root=tmp_path) is False
    assert tracking.make_logger("mnist_mlp", "mnist", {}, tmp_path) is False  # logger=False
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_run_this_store_lacks_starts_a_new_one(tmp_path, capsys):
    logger = tracking.make_logger("mnist_mlp", "mnist", {"nnlab.experiment": "mnist_mlp"},
                                  tmp_path, run_id="0" * 32)
    assert logger.run_id != "0" * 32
    assert "starting a new run" in capsys.readouterr().err


def test_dvc_experiment_name_is_a_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lamb")
    assert tracking.run_tags("e", "d", "bundled", tmp_path)["dvc.exp_name"] == "brisk-lamb"


def test_parallel_jobs_create_one_store_without_a_schema_race(tmp_path):
    """Without the lock, MLflow's migrations race: `duplicate column name: step`."""
    code = (
        "import sys; from pathlib import Path; from nnlab import tracking;"
        "print(tracking.ensure_experiment('mnist', Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=120)
        finally:
            p.kill()
        assert p.returncode == 0, err[-2000:]
        results.append(out.strip())
    assert len(set(results)) == 1 and results[0]
    assert len(tracking.client(tmp_path).search_experiments()) == 2  # Default + mnist
