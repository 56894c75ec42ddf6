"""Outgrowing one machine: thread sizing (fast); through the CLI (slow), two nodes over gloo on
127.0.0.1, queued and ``--temp`` DVC experiments, two clones sharing one MLflow server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from nnlab import threads, tracking
from nnlab.cli import end_group
from tests.conftest import BIN, TINY, cli_env, free_port, run_ok, stages_ran, tiny_params
from tests.test_pipeline_e2e import commit, dvc_project


@pytest.fixture
def jobs(tmp_path, monkeypatch) -> Path:
    """The test's own job registry; torch's thread count restored after."""
    before = torch.get_num_threads()
    monkeypatch.setenv("NNLAB_JOBS_DIR", str(tmp_path / "jobs"))
    yield tmp_path / "jobs"
    torch.set_num_threads(before)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(timeout=60)


@pytest.mark.parametrize(
    ("setting", "workers", "sizes", "expected"),
    [
        ("auto", 0, {"cores": 2, "jobs": 1}, (2, 2, 0)),  # alone: every core
        ("auto", 0, {"cores": 2, "jobs": 2}, (1, 1, 0)),  # two jobs on two cores: one each
        ("auto", 2, {"cores": 8, "jobs": 1}, (6, 2, 2)),  # workers come out of the share
        ("auto", 8, {"cores": 8, "jobs": 2}, (1, 2, 3)),  # ... but never all of it
        ("auto", 4, {"cores": 2, "jobs": 5}, (1, 1, 0)),  # more jobs than cores: no workers
        # the processes of this node count before they register
        ("auto", 0, {"cores": 8, "jobs": 1, "processes_per_node": 4}, (2, 2, 0)),
        (3, 2, {"cores": 2, "jobs": 4}, (3, None, 2)),  # an explicit count is taken as given
    ],
)
def test_plan_splits_the_cores_between_live_jobs(setting, workers, sizes, expected):
    p = threads.plan(setting, workers, **sizes)
    assert (p["threads"], p["interop_threads"], p["num_workers"]) == expected
    if setting == "auto":
        assert p["threads"] + p["num_workers"] <= max(sizes["cores"] // p["jobs"], 1)


@pytest.mark.parametrize("bad", [0, -1, True, "4", 2.0])
def test_a_bad_thread_count_names_the_key(bad):
    with pytest.raises(ValueError, match="loader.threads"):  # config.py refuses it
        tiny_params(**{"loader.threads": bad})


def test_registry_counts_live_processes_and_drops_stale_ones(jobs, sleeper):
    assert threads.live_jobs() == 0  # no folder yet
    threads.register()
    threads.register(sleeper.pid)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    threads.register(dead.pid)
    # a live pid whose start time differs: the pid was reused after its job died
    (jobs / f"{os.getppid()}.json").write_text(json.dumps({"pid": os.getppid(), "start": "1"}))
    (jobs / "junk.json").write_text("{not json")
    assert threads.live_jobs() == 2
    names = sorted(p.name for p in jobs.glob("*.json"))
    assert names == sorted([f"{os.getpid()}.json", f"{sleeper.pid}.json"])
    assert threads.plan("auto", 0, cores=4)["threads"] == 2
    # a stopped job is not counted until it resumes; its file is kept meanwhile
    deadline = time.monotonic() + 10
    for sig, counted in ((signal.SIGSTOP, 1), (signal.SIGCONT, 2)):
        os.kill(sleeper.pid, sig)
        while threads.live_jobs() != counted and time.monotonic() < deadline:  # lands async
            time.sleep(0.05)
        assert threads.live_jobs() == counted
        assert (jobs / f"{sleeper.pid}.json").exists()
    sleeper.kill()
    sleeper.wait(timeout=60)
    assert threads.live_jobs() == 1  # the sleeper is gone
    threads.unregister()
    assert threads.live_jobs() == 0


def test_a_folder_owned_by_someone_else_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    assert threads.register(folder=tmp_path) is None
    assert list(tmp_path.iterdir()) == []


class _Seen(threads.Callback):  # what the sizer saw at each epoch (callbacks run in order)
    def __init__(self, sizer, other):
        self.sizer, self.other, self.seen = sizer, other, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append((threads.live_jobs(), torch.get_num_threads(), dict(self.sizer.plan)))
        if trainer.current_epoch == 0:  # another job starts during epoch 0
            threads.register(self.other.pid)


def _fit(callbacks, model, logger=False):
    import lightning as L

    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=logger,
        enable_checkpointing=False,
        log_every_n_steps=1,
        callbacks=callbacks,
    )
    trainer.fit(model)


def test_sizer_replans_each_epoch_and_unregisters_even_on_failure(
    jobs, monkeypatch, tmp_path, sleeper
):
    import pandas as pd
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.loggers import CSVLogger

    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    sizer = threads.ThreadSizer("auto", num_workers=0)
    seen = _Seen(sizer, sleeper)
    logger = CSVLogger(tmp_path / "logs", name="", version="")
    _fit([sizer, seen], BoringModel(), logger=logger)
    (jobs0, threads0, plan0), (jobs1, threads1, plan1) = seen.seen
    assert (jobs0, threads0, plan0["threads"]) == (1, 4, 4)
    assert (jobs1, threads1, plan1["threads"]) == (2, 2, 2)  # the other job took half
    logged = pd.read_csv(Path(logger.log_dir) / "metrics.csv").dropna(subset="loader/threads")
    assert logged[["loader/threads", "loader/jobs"]].values.tolist() == [[4, 1], [2, 2]]
    assert not (jobs / f"{os.getpid()}.json").exists()

    class Broken(BoringModel):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _fit([threads.ThreadSizer("auto")], Broken())
    assert not (jobs / f"{os.getpid()}.json").exists()


# Slow: the CLI as users run it, every wait bounded, every process killed.
def _start(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_all(procs: list[subprocess.Popen], timeout: float = 400) -> None:
    """Each process must succeed; all are killed if any outlives ``timeout``."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, out[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=30)


def _tiny_project_params(root: Path, experiments: dict, **trainer) -> None:
    raw = {**TINY, "trainer": {**TINY["trainer"], **trainer}, "experiments": experiments}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _runs(uri: str) -> list:
    c = MlflowClient(tracking_uri=uri)
    return c.search_runs([e.experiment_id for e in c.search_experiments()])


@pytest.mark.slow
def test_two_nodes_on_loopback_one_run_one_set_of_outputs(project, tmp_path):
    experiments = {"mnist_cnn": TINY["experiments"]["mnist_cnn"]}
    _tiny_project_params(project, experiments, num_nodes=2, devices=1, strategy="ddp")
    node1 = tmp_path / "node1"  # the second node's own copy of the project: it writes nothing
    shutil.copytree(project, node1)
    port = str(free_port())
    env = cli_env(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", GLOO_SOCKET_IFNAME="lo"
    )
    cmd = [str(BIN / "nnlab"), "train", "mnist_cnn"]
    nodes = enumerate((project, node1))
    _wait_all([_start(cmd, cwd, {**env, "NODE_RANK": str(rank)}) for rank, cwd in nodes])
    receipt = tracking.read_receipt(project / "models/mnist_cnn")
    assert receipt["num_nodes"] == 2
    assert [r.info.run_id for r in _runs(tracking.tracking_uri(project))] == [receipt["run_id"]]
    # node 1 created nothing: no outputs, no store, no logs
    assert sorted(p.name for p in node1.iterdir()) == sorted(
        p.name for p in project.iterdir() if p.name not in ("models", "mlruns")
    )


def _check_dvc_exp_runs(work: Path, expected: dict[str, float], tmp_path: Path) -> None:
    """Each DVC experiment: one finished run with its lr and artifacts in the project's store."""
    runs = {r.data.tags.get("dvc.exp_name"): r for r in _runs(tracking.tracking_uri(work))}
    for name, lr in expected.items():
        run = runs[name]
        assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
        assert float(run.data.params["experiment.lr"]) == lr
        assert run.info.artifact_uri.startswith((work / "mlruns/artifacts").resolve().as_uri())
        dst = tmp_path / "artifacts" / name
        dst.mkdir(parents=True)
        tracking.client(work).download_artifacts(run.info.run_id, "", str(dst))
        assert (dst / "best.ckpt").is_file() and (dst / "evaluation/metrics.json").is_file()
    assert [p for p in (work / ".dvc/tmp/exps").glob("tmp*") if p.is_dir()] == []


@pytest.mark.slow
def test_queued_and_temp_experiments_land_in_the_project_store(tmp_path):
    def one_mlp(raw: dict) -> None:
        mnist = {**raw["data"]["mnist"], **TINY["data"]["mnist"], "max_samples": 300}
        raw["data"], raw["features"] = {"mnist": mnist}, {}
        raw["experiments"] = {"mnist_mlp": {**raw["experiments"]["mnist_mlp"], "epochs": 1}}
        raw["trainer"].update(accelerator="cpu", devices=1)

    work, env = tmp_path / "repo", cli_env()
    dvc_project(work, one_mlp)
    assert "train@mnist_mlp" in stages_ran(run_ok(["dvc", "repro"], work, env))
    commit(work, env, "repro")
    lrs = {"queued-a": 0.01, "queued-b": 0.02}
    try:
        for name, lr in lrs.items():
            lr_set = f"experiments.mnist_mlp.lr={lr}"
            run_ok(["dvc", "exp", "run", "--queue", "-n", name, "-S", lr_set], work, env)
        run_ok(["dvc", "queue", "start", "-j", "2"], work, env)
        busy, deadline = ("Queued", "Running"), time.monotonic() + 600
        while any(w in (status := run_ok(["dvc", "queue", "status"], work, env)) for w in busy):
            assert time.monotonic() < deadline, status
            time.sleep(5)
        assert status.count("Success") == 2, status
    finally:
        subprocess.run(
            ["dvc", "queue", "stop", "--kill"], cwd=work, env=env, capture_output=True, timeout=120
        )
    _check_dvc_exp_runs(work, lrs, tmp_path)
    temp = ["dvc", "exp", "run", "--temp", "-n", "temp-c", "-S", "experiments.mnist_mlp.lr=0.03"]
    run_ok(temp, work, env)
    _check_dvc_exp_runs(work, {"temp-c": 0.03}, tmp_path / "temp")
    assert not (work / ".dvc/tmp/exps/mlruns").exists()


@pytest.fixture
def mlflow_server(tmp_path):
    """`nnlab server` on 127.0.0.1 with its own SQLite store, proxying artifacts; stopped."""
    port, store = free_port(), tmp_path / "server"
    store.mkdir()
    cmd = [str(BIN / "nnlab"), "server", "--port", str(port), "--workers", "1"]
    with (tmp_path / "server.log").open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=store, env=cli_env(), stdout=log, stderr=log, start_new_session=True
        )
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    try:
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=5):
                break
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "MLflow server did not answer in 120 s"
            time.sleep(1)
        yield url
    finally:
        end_group(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_two_clones_share_one_tracking_server(mnist_root, tmp_path, mlflow_server):
    jobs = {"mnist_mlp": tmp_path / "clone_a", "mnist_cnn": tmp_path / "clone_b"}
    for clone in jobs.values():
        shutil.copytree(mnist_root, clone)
        _tiny_project_params(clone, TINY["experiments"])
    env, nnlab = cli_env(MLFLOW_TRACKING_URI=mlflow_server), str(BIN / "nnlab")
    (first, clone_a), (second, clone_b) = jobs.items()
    procs = [_start([nnlab, "train", first], clone_a, env)]
    try:
        receipt = clone_a / "models" / first / "run.json"
        deadline = time.monotonic() + 300
        while not receipt.is_file() and procs[0].poll() is None:  # the first run has started
            assert time.monotonic() < deadline
            time.sleep(0.5)
        procs.append(_start([nnlab, "train", second], clone_b, env))
    finally:
        _wait_all(procs)
    for name, clone in jobs.items():
        run_ok([nnlab, "evaluate", name], clone, env, timeout=300)

    c = MlflowClient(tracking_uri=mlflow_server)
    runs = {r.data.tags["nnlab.experiment"]: r for r in _runs(mlflow_server)}
    assert sorted(runs) == sorted(jobs)
    for name, clone in jobs.items():
        run = runs[name]
        assert run.info.status == "FINISHED" and run.data.params
        assert tracking.read_receipt(clone / "models" / name)["run_id"] == run.info.run_id
        epochs = TINY["experiments"][name]["epochs"]
        assert len(c.get_metric_history(run.info.run_id, "val/acc")) == epochs
        assert {"test/acc", "train_seconds"} <= set(run.data.metrics)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
        dst = tmp_path / "downloads" / name
        dst.mkdir(parents=True)
        c.download_artifacts(run.info.run_id, "", str(dst))
        assert (dst / "best.ckpt").stat().st_size > 0
        assert (dst / "evaluation/figures/confusion_matrix.png").stat().st_size > 0
        assert not (clone / "mlruns").exists()  # nothing went to a local store
