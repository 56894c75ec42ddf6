import csv
import signal

import lightning as L
import numpy as np
import pytest

from nnlab import tracking
from nnlab.classifier import Classifier
from nnlab.data.datamodule import ArrayDataModule
from nnlab.data.prepare import StageOrderError, load_arrays
from nnlab.evaluate import evaluate, load_classifier, predict_arrays
from nnlab.files import read_json
from nnlab.train import train
from tests.conftest import tiny_params


def _runs(root, name=None):
    c = tracking.client(root=root)
    exps = c.search_experiments()
    runs = c.search_runs([e.experiment_id for e in exps])
    return [r for r in runs if name is None or r.info.run_name == name]


def test_fast_dev_run_both_mnist_models(project):
    params = tiny_params()
    for name in ("mnist_mlp", "mnist_cnn"):
        exp = params.experiment(name)
        dm = ArrayDataModule("mnist", exp, params.trainer, params.seed, project)
        model = Classifier(model=exp.model, meta=dm.meta, model_options=exp.model_options)
        trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False,
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model, datamodule=dm)
        assert trainer.state.finished
        assert float(trainer.callback_metrics["train/loss"]) > 0


def test_train_logs_one_run_and_writes_outputs(project):
    params = tiny_params()
    receipt = train(params, "mnist_cnn", project)
    model_dir = project / "models/mnist_cnn"
    assert {"best.ckpt", "last.ckpt", "run.json", "history.csv", "summary.txt"} <= {
        p.name for p in model_dir.iterdir()
    }
    assert receipt["status"] == "FINISHED" and receipt["epochs_run"] == 2
    uri = receipt["tracking_uri"]
    assert uri.startswith("sqlite:///") and str(project) in uri
    runs = _runs(project)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == receipt["run_id"]
    assert run.data.tags["data.source"].startswith("bundled")
    assert run.data.tags["nnlab.experiment"] == "mnist_cnn"
    assert "git.commit" in run.data.tags
    assert run.data.params["experiment.epochs"] == "2"
    assert run.data.params["trainer.accelerator"] == "cpu"
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "train/lr"):
        assert key in run.data.metrics, key
    history = tracking.client(root=project).get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 2  # one point per epoch
    with open(model_dir / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["0", "1"] and all(r["train/acc"] for r in rows)


def test_best_checkpoint_reproduces_logged_val_acc(project):
    receipt = train(tiny_params(), "mnist_mlp", project)
    model = load_classifier(project / "models/mnist_mlp/best.ckpt")
    val = load_arrays("mnist", "val", project)
    probs, _ = predict_arrays(model, val)
    acc = float((probs.argmax(1) == np.asarray(val["y"])).mean())
    assert acc == pytest.approx(receipt["best_val_acc"], abs=1e-6)


def test_same_params_same_metrics_on_cpu(project, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(project, other)
    a = train(tiny_params(), "mnist_mlp", project)
    b = train(tiny_params(), "mnist_mlp", other)
    assert a["best_val_acc"] == b["best_val_acc"]
    assert (project / "models/mnist_mlp/history.csv").read_text() == (
        other / "models/mnist_mlp/history.csv").read_text()


def test_interrupted_training_resumes_from_last_ckpt(project, monkeypatch):
    params = tiny_params(**{"experiments.mnist_mlp.epochs": 3})
    original = Classifier.on_train_epoch_start

    def interrupt(self):
        if self.current_epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "on_train_epoch_start", interrupt)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            train(params, "mnist_mlp", project)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after Ctrl-C
    model_dir = project / "models/mnist_mlp"
    assert (model_dir / "last.ckpt").is_file()
    first = read_json(model_dir / "run.json")
    assert first["status"] == "RUNNING"

    monkeypatch.setattr(Classifier, "on_train_epoch_start", original)
    resumed = train(params, "mnist_mlp", project)
    assert resumed["run_id"] == first["run_id"]  # the same MLflow run continues
    assert resumed["epochs_run"] == 3
    assert len(_runs(project)) == 1
    rows = (model_dir / "history.csv").read_text().splitlines()
    assert len(rows) == 4  # header + 3 epochs, the first from before the interruption

    # changed params: no resume, a fresh run
    changed = tiny_params(**{"experiments.mnist_mlp.epochs": 3, "experiments.mnist_mlp.lr": 0.01})
    fresh = train(changed, "mnist_mlp", project)
    assert fresh["run_id"] != first["run_id"]


def test_evaluate_writes_reports_and_logs_into_training_run(project):
    params = tiny_params()
    receipt = train(params, "mnist_cnn", project)
    metrics = evaluate(params, "mnist_cnn", project)
    report = project / "reports/experiments/mnist_cnn"
    on_disk = read_json(report / "metrics.json")
    assert on_disk["test/acc"] == metrics["test/acc"] and 0 <= metrics["test/acc"] <= 1
    assert set(on_disk["per_class"]) == {str(d) for d in range(10)}
    assert sum(c["support"] for c in on_disk["per_class"].values()) == on_disk["test/n"]
    for png in ("confusion_matrix.png", "learning_curves.png", "misclassified.png"):
        assert (report / "figures" / png).stat().st_size > 1000
    rows = (report / "confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == on_disk["test/n"] + 1
    run = tracking.client(root=project).get_run(receipt["run_id"])
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    arts = [a.path for a in tracking.client(root=project).list_artifacts(receipt["run_id"])]
    assert "evaluation" in arts and "best.ckpt" in arts
    assert len(_runs(project)) == 1


def test_compare_table(project):
    from nnlab.compare import compare

    params = tiny_params()
    for name in params.experiments:
        train(params, name, project)
        evaluate(params, name, project)
    text = compare(params, project)
    assert "| mnist_mlp | mnist | mlp |" in text and "| mnist_cnn |" in text
    assert "**bundled" in text  # the offline substitute is flagged
    assert (project / "reports/comparison.png").stat().st_size > 1000
    assert (project / "reports/comparison.csv").read_text().count("\n") == 3


def test_train_before_split_names_the_stage(tmp_path):
    with pytest.raises(StageOrderError, match="split@mnist"):
        train(tiny_params(), "mnist_cnn", tmp_path)


def test_tracking_uri_respects_environment(monkeypatch, tmp_path):
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5999"
    assert tracking.artifact_location(tmp_path) is None
