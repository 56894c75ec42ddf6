"""MLflow as its users expect: the splits as a run's dataset inputs, the best model registered
as a pyfunc model that predicts like ``nnlab predict``, each bad file its own error line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps

import nnlab.stages.evaluate
from nnlab import serving, tracking
from nnlab.cli import main
from nnlab.config import TrackingConfig
from nnlab.data.prepare import load_arrays, split_digest
from nnlab.files import read_json
from nnlab.serving import predict
from nnlab.stages.evaluate import run as evaluate
from nnlab.stages.train import run as train
from tests.conftest import params_text, tiny_params
from tests.folders import prepare
from tests.test_adversarial_data import BAD_IMAGES


@pytest.fixture(autouse=True)
def no_pictures(monkeypatch):  # the evaluation's figures play no part here
    monkeypatch.setattr(nnlab.stages.evaluate, "_figures", lambda *a, **k: None)


def _train_evaluate(params, name, root) -> str:
    """Train and evaluate without evaluate's own model logging: the tests call it."""
    receipt = train(params, name, root)
    evaluate(params.model_copy(update={"tracking": TrackingConfig(log_model=False)}), name, root)
    return receipt["run_id"]


def _inputs(root, run_id) -> dict[str, tuple]:  # by context: (dataset, tags)
    found = {}
    for given in tracking.client(root).get_run(run_id).inputs.dataset_inputs:
        tags = {t.key: t.value for t in given.tags}
        found[tags["mlflow.data.context"]] = (given.dataset, tags)
    return found


def _served(params, name, root, monkeypatch, files, inputs: dict | None = None):
    """Model ``name@best`` and its answer on ``inputs`` (default: ``files`` encoded), agreeing
    with nnlab predict on ``files``."""
    inputs = inputs or {"image": [f.read_bytes() for f in files]}
    expected = predict(params, name, [str(f) for f in files], root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.tracking_uri(root))  # as a user would
    model = mlflow.pyfunc.load_model(f"models:/{name}@best")
    out = model.predict(pd.DataFrame(inputs))
    for row, want in zip(out.to_dict("records"), expected, strict=False):
        if "label" in want:
            assert row["label"] == want["label"] and row["error"] is None
            p = want["probabilities"]
            assert [row[f"p_{c}"] for c in p] == pytest.approx(list(p.values()), abs=1e-4)
    return model, out


def test_evaluate_registers_the_best_model_that_predicts_like_nnlab_predict(
    project, tmp_path, monkeypatch, capsys
):
    params = tiny_params(**{"experiments.mnist_cnn.epochs": 3})
    run_id = train(params, "mnist_cnn", project)["run_id"]
    # the splits are the run's dataset inputs, with the content digests of the split manifest
    manifest = read_json(project / "data/split/mnist/manifest.json")
    inputs = _inputs(project, run_id)
    assert sorted(inputs) == ["test", "train", "val"]
    assert inputs["test"][0].digest == split_digest(load_arrays("mnist", "test", project))
    for split, (ds, tags) in inputs.items():
        assert (ds.name, ds.digest) == ("mnist", manifest["digests"][split])
        assert tags["nnlab.samples"] == str(manifest["counts"][split])
        assert ds.source_type == "code" and "bundled" in ds.source  # the fallback, named
        features = json.loads(json.loads(ds.schema)["mlflow_tensorspec"]["features"])
        assert [(f["name"], f["tensor-spec"]["dtype"]) for f in features] == [("x", "uint8")]

    client = tracking.client(project)
    before = client.get_run(run_id).info
    env = {k: os.environ.get(k) for k in serving.STORE_VARS}
    loads, trainers = mock.Mock(wraps=torch.load), mock.Mock(wraps=serving.inference_trainer)
    monkeypatch.setattr(torch, "load", loads)
    for module in (nnlab.stages.evaluate, serving):
        monkeypatch.setattr(module, "inference_trainer", trainers)
    evaluate(params, "mnist_cnn", project)
    # the work is done once: one checkpoint load, one Trainer (MLflow's check reuses both)
    assert (loads.call_count, trainers.call_count) == (1, 1)
    assert env == {k: os.environ.get(k) for k in serving.STORE_VARS}  # left as they were
    after = client.get_run(run_id)
    assert (after.info.status, after.info.end_time) == (before.status, before.end_time)
    assert len(after.outputs.model_outputs) == 1  # the runs table's Models column
    version = client.get_model_version_by_alias("mnist_cnn", "best")
    assert (str(version.version), version.run_id) == ("1", run_id)
    acc = read_json(project / "reports/experiments/mnist_cnn/metrics.json")["test/acc"]
    assert version.tags["test/acc"] == f"{acc:.4f}"
    evaluate(params, "mnist_cnn", project)  # the same checkpoint again: no new version
    assert [str(v.version) for v in client.search_model_versions("name = 'mnist_cnn'")] == ["1"]

    # test digits as PNG files, every other one dark on white, bigger and RGB; a junk file
    test = load_arrays("mnist", "test", project)
    files = [tmp_path / f"good{i}.png" for i in range(4)]
    for i, file in enumerate(files):
        pil = Image.fromarray(np.asarray(test["x"][i, :, :, 0]))
        if i % 2:  # must be converted back
            pil = ImageOps.invert(pil).resize((112, 112)).convert("RGB")
        pil.save(file)
    (tmp_path / "notes.png").write_text("not an image")
    model, out = _served(
        params, "mnist_cnn", project, monkeypatch, [*files, tmp_path / "notes.png"]
    )
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image"]
    assert list(out.columns) == ["label", "probability", *[f"p_{d}" for d in range(10)], "error"]
    junk = out.iloc[-1]
    assert junk["label"] is None and np.isnan(junk["probability"])
    assert junk["error"].startswith("row 4: <12 bytes>: not a readable image")
    # the model agrees with itself on the original and the inverted, resized copies
    truth = [str(int(y)) for y in test["y"][:4]]
    assert sum(r == t for r, t in zip(out["label"], truth, strict=False)) >= 2

    # nnlab predict: each missing, junk, bomb, truncated file, folder, link loop is one error line
    files = [str(f) for f in files]
    for i, data in enumerate(BAD_IMAGES):
        (tmp_path / f"bad{i}.png").write_bytes(data)
        files.insert(1, str(tmp_path / f"bad{i}.png"))
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    files += [str(tmp_path / n) for n in ("missing.png", "notes.png", "", "loop.png")]
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    results = predict(params, "mnist_cnn", files, project)
    assert [r["file"] for r in results] == files
    good = [r["file"] for r in results if "label" in r]
    assert good == [f for f in files if Path(f).name.startswith("good")]
    errors = {Path(r["file"]).name: r["error"] for r in results if "error" in r}
    assert "no such file" in errors["missing.png"] and "missing.png" in errors["missing.png"]
    assert "not a readable image" in errors["notes.png"]
    assert all("\n" not in e and (f in e or "bytes" in e) for f, e in errors.items())
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before

    # the CLI: names that start with "-" are files, not options, as they are or after --
    (project / "params.yaml").write_text(params_text(params))
    monkeypatch.chdir(project)
    for name in ("-dash.png", "--json.png"):
        Path(name).write_bytes(Path(files[0]).read_bytes())
    capsys.readouterr()
    assert main(["predict", "mnist_cnn", "-dash.png", files[-4], "--json"]) == 1  # one missing
    assert main(["predict", "--json", "mnist_cnn", "--", "--json.png", "-dash.png"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    names = [Path(r["file"]).name for r in lines]
    assert names == ["-dash.png", "missing.png", "--json.png", "-dash.png"]
    assert "error" in lines[1] and lines[0]["label"] == lines[2]["label"] == lines[3]["label"]


@pytest.mark.parametrize(
    ("manifest", "kind", "where"),
    [
        ({"path": "../datasets/aclImdb.tar.gz"}, "local", "/datasets/aclImdb.tar.gz"),
        ({"files": {"a.gz": {"url": "https://example.org/a.gz"}}}, "http", "https://example.org"),
    ],
)
def test_dataset_source_is_the_path_or_the_url(manifest, kind, where):  # fallback: test 1
    logged = mlflow.data.from_numpy(np.zeros(1), source=tracking.dataset_source(manifest))
    assert logged.to_dict()["source_type"] == kind and where in logged.to_dict()["source"]


def test_text_model_round_trip(tmp_path, monkeypatch):
    from tests.test_text_folder import imdb_params

    params = imdb_params()
    prepare(params, "imdb", tmp_path)
    _train_evaluate(params, "imdb_gru", tmp_path)
    assert serving.log_best_model(params, "imdb_gru", tmp_path) == "1"
    reviews = [
        "the acting was not bad at all, a good film",
        "not good. boring and dull",
        "zzzz qqqq",
    ]  # unknown words are <unk>, as for nnlab predict
    files = [tmp_path / f"review{i}.txt" for i in range(3)]
    for path, text in zip(files, reviews, strict=True):
        path.write_text(text)
    model, out = _served(
        params, "imdb_gru", tmp_path, monkeypatch, files, {"text": [*reviews, "  ...  "]}
    )
    assert out["error"].iloc[-1] == "row 3: no words to classify"
    # the input example the UI shows is real test reviews, as text
    example = model.input_example
    assert list(example.columns) == ["text"] and len(example) == 2
    assert all(isinstance(t, str) and t for t in example["text"])


def test_model_logging_off_failing_elsewhere_and_alias_best(project, tmp_path, monkeypatch):
    """Off logs nothing; a failed upload leaves the run as it was; MLflow's global URI does not
    redirect it; alias best follows the highest test/acc, a tie leaving it where it is."""
    params = tiny_params()
    client = tracking.client(project)
    first = _train_evaluate(params, "mnist_cnn", project)
    before = client.get_run(first).info
    experiment = client.get_experiment_by_name("mnist").experiment_id
    off = params.model_copy(update={"tracking": TrackingConfig(log_model=False)})
    assert serving.log_best_model(off, "mnist_cnn", project) is None
    assert client.get_run(first).outputs.model_outputs == []
    assert client.search_logged_models(experiment_ids=[experiment]) == []

    with monkeypatch.context() as patched:
        patched.setattr(mlflow.pyfunc, "log_model", mock.Mock(side_effect=OSError("store full")))
        with pytest.raises(OSError, match="store full"):
            serving.log_best_model(params, "mnist_cnn", project)
    after = client.get_run(first).info
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)
    assert client.search_registered_models() == []

    best = project / "models/mnist_cnn/best.ckpt"  # a link out of the folder, as DVC's cache
    best.rename(project / "cache.ckpt")
    best.symlink_to(project / "cache.ckpt")
    # an earlier MLFlowLogger left MLflow's global URI on another store, its variable unset
    other = f"sqlite:///{tmp_path / 'other.db'}"
    mlflow.set_tracking_uri(other)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    try:
        assert serving.log_best_model(params, "mnist_cnn", project) == "1"
        assert mlflow.get_tracking_uri() == other
    finally:
        mlflow.set_tracking_uri(tracking.tracking_uri(project))
    assert [m.name for m in client.search_registered_models()] == ["mnist_cnn"]

    client.log_metric(first, "test/acc", 0.99)  # better than any tiny retraining
    second = _train_evaluate(
        tiny_params(**{"experiments.mnist_cnn.lr": 0.002}), "mnist_cnn", project
    )
    assert serving.log_best_model(params, "mnist_cnn", project) == "2"
    assert str(client.get_model_version_by_alias("mnist_cnn", "best").version) == "1"
    client.log_metric(second, "test/acc", 0.995)  # now the newer one is better
    assert serving.move_alias("mnist_cnn", project) == "2"
    assert str(client.get_model_version_by_alias("mnist_cnn", "best").version) == "2"
    client.log_metric(first, "test/acc", 0.995)  # a tie: the holder keeps it
    assert serving.move_alias("mnist_cnn", project) == "2"


def test_a_head_on_a_features_cache_serves_raw_photos(tmp_path, monkeypatch):
    """A head on cached features is registered with its frozen base; inputs: the cache's splits."""
    from nnlab.stages.features import run as run_features
    from tests.test_transfer import cache_params

    head = {"dataset": "cats_lite0", "model": "mlp", "epochs": 1, "batch_size": 8}
    params = cache_params(head={**head, "model_options": {"hidden": 16}})
    prepare(params, "cats_vs_dogs", tmp_path)
    run_features(params, "cats_lite0", tmp_path)
    run_id = train(params, "head", tmp_path)["run_id"]
    inputs = _inputs(tmp_path, run_id)
    assert {ds.name for ds, _ in inputs.values()} == {"cats_lite0"}
    assert {tags["nnlab.derived_from"] for _, tags in inputs.values()} == {"cats_vs_dogs"}
    evaluate(params, "head", tmp_path)  # registers the model, base and head
    images = np.load(tmp_path / "data/split/cats_vs_dogs/test_x.npy")[:3]
    files = [tmp_path / f"p{i}.png" for i in range(len(images))]
    for path, img in zip(files, images, strict=True):
        Image.fromarray(img).save(path)
    _served(params, "head", tmp_path, monkeypatch, files)
