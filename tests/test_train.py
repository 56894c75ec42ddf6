import contextlib
import csv
import ctypes
import math
import os
import shutil
import signal
from unittest import mock

import lightning as L
import pytest
import torch

from nnlab import classifier, config, tracking
from nnlab.classifier import Classifier, inference_trainer, load_classifier
from nnlab.config import ConfigError
from nnlab.data.datamodule import ArrayDataModule
from nnlab.data.prepare import StageOrderError
from nnlab.files import exclusive, read_json
from nnlab.stages.compare import run as compare
from nnlab.stages.evaluate import run as evaluate
from nnlab.stages.split import run as run_split
from nnlab.stages.train import build_classifier
from nnlab.stages.train import run as train
from tests.conftest import tiny_params


def _runs(root, name=None):
    c = tracking.client(root=root)
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
    return [r for r in runs if name in (None, r.info.run_name)]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@contextlib.contextmanager
def _stops():
    """The training inside stops with SystemExit (as on Ctrl-C)."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            yield
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after Ctrl-C


def test_train_evaluate_compare_and_a_later_split(project, monkeypatch):
    test = mock.create_autospec(L.Trainer.test, side_effect=L.Trainer.test)
    monkeypatch.setattr(L.Trainer, "test", test)
    params = tiny_params()
    receipts = {name: train(params, name, project) for name in params.experiments}
    receipt, model_dir = receipts["mnist_cnn"], project / "models/mnist_cnn"
    files = {p.name for p in model_dir.iterdir()}
    assert {"best.ckpt", "last.ckpt", "run.json", "history.csv", "summary.txt"} <= files
    assert receipt["status"] == "FINISHED" and receipt["epochs_run"] == 2
    assert set(receipt["split_digests"]) == {"train", "val", "test"}
    (run,) = _runs(project, "mnist_cnn")
    assert run.info.run_id == receipt["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["data.source"].startswith("bundled")
    assert run.data.tags["nnlab.experiment"] == "mnist_cnn" and "git.commit" in run.data.tags
    # params once, as flat keys: no second copy of the Classifier's arguments
    assert run.data.params["experiment.epochs"] == "2" and "lr" not in run.data.params
    tracked = run.data.metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best"} <= set(tracked)
    assert any(k.startswith("lr-") for k in tracked)  # LearningRateMonitor
    assert tracked["val/acc_best"] == pytest.approx(receipt["val/acc_best"], abs=1e-4)
    client = tracking.client(root=project)
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # one per epoch
    rows = list(csv.DictReader((model_dir / "history.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["0", "1"] and all(r["train/acc"] for r in rows)
    best = model_dir / "best.ckpt"  # reproduces the best logged val/acc
    dm = ArrayDataModule("mnist", params.experiment("mnist_cnn"), params.loader, 7, project)
    (result,) = inference_trainer(params).validate(
        load_classifier(best), datamodule=dm, ckpt_path=str(best), verbose=False
    )
    logged = max(m.value for m in client.get_metric_history(run.info.run_id, "val/acc"))
    assert result["val/acc"] == pytest.approx(logged, abs=1e-6)

    metrics = {name: evaluate(params, name, project) for name in params.experiments}["mnist_cnn"]
    # trainer.test once each, on the checkpoint evaluate loaded
    assert [call.kwargs.get("ckpt_path") for call in test.call_args_list] == [None, None]
    report = project / "reports/experiments/mnist_cnn"
    on_disk = read_json(report / "metrics.json")
    assert set(on_disk) == {"test/acc", "test/loss", "val/acc_best", "epochs_run", "train_seconds"}
    assert on_disk["test/acc"] == metrics["test/acc"] and 0 <= metrics["test/acc"] <= 1
    assert on_disk["val/acc_best"] == receipt["val/acc_best"]
    per_class = read_json(report / "per_class.json")
    assert set(per_class) == {str(d) for d in range(10)}
    n = sum(c["support"] for c in per_class.values())
    rows = (report / "confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == n + 1
    correct = sum(a == p for a, p in (r.split(",") for r in rows[1:]))
    assert correct / n == pytest.approx(metrics["test/acc"], abs=1e-4)
    for png in ("confusion_matrix.png", "learning_curves.png", "misclassified.png"):
        assert (report / "figures" / png).stat().st_size > 1000
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged["test/acc"] == pytest.approx(metrics["test/acc"])
    arts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "evaluation" in arts and "best.ckpt" in arts
    assert len(_runs(project)) == 2  # evaluate logs into the training runs

    text = compare(params, project)
    assert "| mnist_mlp | mnist | mlp |" in text and "| mnist_cnn |" in text
    assert "val/acc_best" in text.splitlines()[2]
    assert "**bundled" in text  # the offline substitute is flagged
    assert (project / "reports/comparison.png").stat().st_size > 1000
    assert (project / "reports/comparison.csv").read_text().count("\n") == 3

    before = _snapshot(report)
    resplit = tiny_params(**{"data.mnist.max_samples": 300})  # by hand, outside dvc repro
    run_split(resplit, "mnist", project)
    with pytest.raises(
        StageOrderError,
        match=r"data/split/mnist: changed since .*models/mnist_cnn.*rerun train@mnist_cnn",
    ):
        evaluate(resplit, "mnist_cnn", project)
    assert _snapshot(report) == before  # the earlier report is kept as it was


def test_an_interrupted_training_resumes_and_a_failed_start_changes_nothing(project, monkeypatch):
    params = tiny_params(**{"experiments.mnist_mlp.epochs": 3})
    original = Classifier.on_train_epoch_start

    def interrupt(self):
        if self.current_epoch == 1:
            raise KeyboardInterrupt
        original(self)

    with monkeypatch.context() as patch, _stops():
        patch.setattr(Classifier, "on_train_epoch_start", interrupt)
        train(params, "mnist_mlp", project)
    model_dir = project / "models/mnist_mlp"
    first = read_json(model_dir / "run.json")
    assert first["status"] == "RUNNING" and (model_dir / "last.ckpt").is_file()

    resumed = train(params, "mnist_mlp", project)
    assert resumed["run_id"] == first["run_id"] and len(_runs(project)) == 1  # the same run
    assert resumed["epochs_run"] == 3
    rows = (model_dir / "history.csv").read_text().splitlines()
    assert len(rows) == 4  # header + 3 epochs, the first from before the interruption
    elapsed = torch.load(model_dir / "last.ckpt", weights_only=False)["callbacks"]
    timer = next(v for k, v in elapsed.items() if k.startswith("Timer"))
    assert resumed["train_seconds"] == pytest.approx(timer["time_elapsed"]["train"], abs=0.5)

    changed = tiny_params(**{"experiments.mnist_mlp.epochs": 3, "experiments.mnist_mlp.lr": 0.01})
    assert train(changed, "mnist_mlp", project)["run_id"] != first["run_id"]  # no resume

    # a run that fails before its first epoch leaves the outputs as they were
    before = _snapshot(model_dir)
    changed = tiny_params(**{"experiments.mnist_mlp.lr": 0.05})
    with monkeypatch.context() as patch, _stops():  # Ctrl-C while loading data
        patch.setattr(ArrayDataModule, "setup", mock.Mock(side_effect=KeyboardInterrupt))
        train(changed, "mnist_mlp", project)
    assert _snapshot(model_dir) == before
    outside = sorted(p.name for p in project.parent.iterdir())
    rotate = [{"name": "Rotate", "args": {"limit": "far"}}]
    for bad in ({"trainer.accelerator": "gpu"}, {"experiments.mnist_mlp.augment": rotate}):
        with pytest.raises(ConfigError, match=next(iter(bad))):  # refused before anything
            train(tiny_params(**bad), "mnist_mlp", project)
        assert _snapshot(model_dir) == before
    shutil.rmtree(project / "data/split/mnist")  # data missing: a clean error, nothing lost
    with pytest.raises(StageOrderError, match="split@mnist"):
        train(changed, "mnist_mlp", project)
    assert _snapshot(model_dir) == before
    assert sorted(p.name for p in project.parent.iterdir()) == outside  # nothing beside it


def test_refused_before_any_epoch_the_same_params_the_same_metrics_no_checkpoint_failed(
    project, monkeypatch, tmp_path
):
    with monkeypatch.context() as env, pytest.raises(ValueError, match="/dev/null: not a folder"):
        env.setenv("NNLAB_JOBS_DIR", "/dev/null")
        train(tiny_params(), "mnist_mlp", project)
    assert not (project / "models").exists()
    (project / "models").mkdir()
    lock = rf"\.mnist_mlp\.lock: train@mnist_mlp is already running \(pid {os.getpid()}\)"
    held = exclusive(project / "models/.mnist_mlp.lock", "train@mnist_mlp")  # another training
    with held, pytest.raises(RuntimeError, match=lock):
        train(tiny_params(), "mnist_mlp", project)
    (elsewhere := tmp_path / "elsewhere").mkdir()
    (project / "models/mnist_mlp").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="mnist_mlp: is a symbolic link"):
        train(tiny_params(), "mnist_mlp", project)
    assert list(elsewhere.iterdir()) == []
    (project / "models/mnist_mlp").unlink()
    other = shutil.copytree(project, tmp_path / "other")
    a = train(tiny_params(), "mnist_mlp", project)  # the lock went with its holder
    b = train(tiny_params(), "mnist_mlp", other)
    assert a["val/acc_best"] == b["val/acc_best"]
    history = [(root / "models/mnist_mlp/history.csv").read_text() for root in (project, other)]
    assert history[0] == history[1]
    with pytest.raises(RuntimeError, match="no best.ckpt was written"):  # not FINISHED
        train(tiny_params(**{"trainer.limit_val_batches": 0}), "mnist_mlp", other)
    assert _runs(other)[0].info.status == "FAILED"  # the latest run


def test_lightnings_nvml_check_is_dropped_only_where_nvml_is_absent(monkeypatch):
    def absent(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setenv(classifier.NVML_CHECK, "1")
    monkeypatch.setattr(ctypes, "CDLL", absent)
    assert classifier.skip_absent_nvml() and classifier.NVML_CHECK not in os.environ
    monkeypatch.setenv(classifier.NVML_CHECK, "1")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a driver is installed
    assert not classifier.skip_absent_nvml() and os.environ[classifier.NVML_CHECK] == "1"


@pytest.mark.parametrize(("native", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_precision_auto_trains_in_bf16_only_where_the_cpu_has_it(
    project, monkeypatch, native, expected
):
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: native)
    receipt = train(tiny_params(**{"trainer.precision": "auto"}), "mnist_mlp", project)
    (run,) = _runs(project)
    assert receipt["precision"] == run.data.tags["precision"] == expected
    assert run.data.params["trainer.precision"] == expected


def test_lr_schedule_warms_up_then_decays_by_the_step(project):
    """warmup_epochs: a linear rise to lr; cosine: down to near 0 at the last step."""
    params = tiny_params(
        **{"experiments.mnist_mlp.epochs": 3, "experiments.mnist_mlp.lr": 0.01},
        **{"experiments.mnist_mlp.lr_schedule": "cosine", "experiments.mnist_mlp.warmup_epochs": 1},
    )
    exp = params.experiment("mnist_mlp")
    dm = ArrayDataModule(exp.dataset, exp, params.loader, params.seed, project)
    model = build_classifier(params, "mnist_mlp", dm.meta, "test")
    seen: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, *args) -> None:
            seen.append(module.optimizers().param_groups[0]["lr"])

    trainer = L.Trainer(
        max_epochs=3, limit_train_batches=4, limit_val_batches=1, callbacks=[Record()],
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert seen[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    decay = seen[4:]
    assert len(decay) == 8 and decay == sorted(decay, reverse=True) and decay[0] == 0.01
    assert decay[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
