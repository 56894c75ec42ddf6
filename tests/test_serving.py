"""MLflow as its users expect: the splits as dataset inputs of a run, the best model as a
registered pyfunc model that predicts on images or texts like ``nnlab predict``."""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nnlab import serving, tracking
from nnlab.data.prepare import load_arrays, split_digest
from nnlab.files import read_json
from nnlab.predict import predict
from nnlab.stages.evaluate import run as evaluate
from nnlab.stages.train import run as train
from tests.conftest import tiny_params


@pytest.fixture(autouse=True)
def no_pictures(monkeypatch):
    """The evaluation's figures play no part here: skipped to keep the tests fast."""
    import nnlab.stages.evaluate

    monkeypatch.setattr(nnlab.stages.evaluate, "_pictures", lambda *a, **k: None, raising=False)


@pytest.fixture
def store(monkeypatch):
    """Point MLflow's fluent API at a project's store, as a user loading a model would."""

    def use(root):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.resolve_uri(root))

    return use


def _train_evaluate(params, name, root) -> str:
    """Train and evaluate without evaluate's own model logging: the tests call it."""
    from nnlab.config import TrackingConfig

    receipt = train(params, name, root)
    evaluate(params.model_copy(update={"tracking": TrackingConfig(log_model=False)}), name, root)
    return receipt["run_id"]


def test_evaluate_registers_the_best_model(project):
    params = tiny_params()
    receipt = train(params, "mnist_mlp", project)
    evaluate(params, "mnist_mlp", project)
    version = tracking.client(project).get_model_version_by_alias("mnist_mlp", "best")
    assert str(version.version) == "1" and version.run_id == receipt["run_id"]


def test_splits_are_the_runs_dataset_inputs(project):
    params = tiny_params()
    run_id = train(params, "mnist_mlp", project)["run_id"]
    digests = tracking.log_datasets(run_id, "mnist", project)
    manifest = read_json(project / "data/split/mnist/manifest.json")
    assert digests == [manifest["digests"][s] for s in ("train", "val", "test")]
    assert len(set(digests)) == 3 and all(len(d) == 16 for d in digests)
    # the digest is the content's: recomputed from the arrays on disk it is the same
    assert digests[2] == split_digest(load_arrays("mnist", "test", project))
    run = tracking.client(project).get_run(run_id)
    got = {}
    for given in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in given.tags}
        got[tags["mlflow.data.context"]] = (given.dataset, tags)
    assert sorted(got) == ["test", "train", "val"]
    for split, digest in zip(("train", "val", "test"), digests, strict=True):
        ds, tags = got[split]
        assert (ds.name, ds.digest) == ("mnist", digest)
        assert tags["nnlab.samples"] == str(manifest["counts"][split])
        assert read_json_str(ds.profile) == {"num_rows": manifest["counts"][split]}
        assert ds.source_type == "code" and "bundled" in ds.source  # the fallback, named
        assert '"x"' in ds.schema and "uint8" in ds.schema


def read_json_str(text: str):
    import json

    return json.loads(text)


def test_dataset_source_is_the_path_the_url_or_the_fallback(tmp_path):
    local = tracking.dataset_source({"path": str(tmp_path), "files": {}})
    assert local._get_source_type() == "local" and str(tmp_path) in local.to_json()
    relative = tracking.dataset_source({"path": "../shared/datasets/aclImdb.tar.gz"})
    assert "shared/datasets/aclImdb.tar.gz" in relative.to_json()  # taken absolute
    http = tracking.dataset_source({"files": {"a.gz": {"url": "https://example.org/a.gz"}}})
    assert http._get_source_type() == "http" and http.url == "https://example.org/a.gz"
    fallback = tracking.dataset_source({"source": "synthetic reviews", "files": {}})
    assert fallback.to_dict() == {"tags": {"source": "synthetic reviews"}}


def _pngs(root, folder, n=3):
    """The first ``n`` test digits as PNG files, the last one drawn dark on light paper (the
    inversion rule), and a junk file."""
    x = np.asarray(load_arrays("mnist", "test", root)["x"][:n])[..., 0]
    files = []
    for i, img in enumerate(x):
        path = folder / f"digit{i}.png"
        Image.fromarray(255 - img if i == n - 1 else img).save(path)
        files.append(path)
    junk = folder / "junk.png"
    junk.write_bytes(b"not an image")
    return [*files, junk]


def test_best_model_is_registered_and_predicts_like_nnlab_predict(project, tmp_path, store):
    params = tiny_params()
    run_id = _train_evaluate(params, "mnist_cnn", project)
    client = tracking.client(project)
    before = client.get_run(run_id).info
    env = {k: os.environ.get(k) for k in serving.STORE_VARS}
    assert serving.log_best_model(params, "mnist_cnn", project) == "1"
    assert env == {k: os.environ.get(k) for k in serving.STORE_VARS}  # left as they were
    after = client.get_run(run_id)
    assert (after.info.status, after.info.end_time) == (before.status, before.end_time)
    assert len(after.outputs.model_outputs) == 1  # the runs table's Models column
    version = client.get_model_version_by_alias("mnist_cnn", "best")
    assert (str(version.version), version.run_id) == ("1", run_id)
    acc = read_json(project / "reports/experiments/mnist_cnn/metrics.json")["test/acc"]
    assert version.tags["test/acc"] == f"{acc:.4f}"

    files = _pngs(project, tmp_path)
    expected = predict(params, "mnist_cnn", [str(f) for f in files], project)
    store(project)
    model = mlflow.pyfunc.load_model("models:/mnist_cnn@best")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image"]
    out = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    assert list(out.columns) == ["label", "probability", *[f"p_{d}" for d in range(10)], "error"]
    for row, want in zip(out.itertuples(), expected[:-1], strict=False):
        assert row.label == want["label"] and row.error is None
        assert row.probability == pytest.approx(want["probability"], abs=1e-4)
        for d in range(10):
            assert getattr(row, f"p_{d}") == pytest.approx(want["probabilities"][str(d)],
                                                           abs=1e-4)
    junk = out.iloc[-1]
    assert junk["label"] is None and np.isnan(junk["probability"])
    assert junk["error"].startswith("row 3: <12 bytes>: not a readable image")


def test_alias_best_follows_the_highest_test_acc(project):
    params = tiny_params()
    client = tracking.client(project)
    first = _train_evaluate(params, "mnist_cnn", project)
    assert serving.log_best_model(params, "mnist_cnn", project) == "1"
    client.log_metric(first, "test/acc", 0.99)  # better than any tiny retraining
    second = _train_evaluate(tiny_params(**{"experiments.mnist_cnn.lr": 0.002}), "mnist_cnn",
                             project)
    assert second != first
    assert serving.log_best_model(params, "mnist_cnn", project) == "2"
    assert str(client.get_model_version_by_alias("mnist_cnn", "best").version) == "1"
    client.log_metric(second, "test/acc", 0.995)  # now the newer one is better
    assert serving.move_alias("mnist_cnn", project) == "2"
    assert str(client.get_model_version_by_alias("mnist_cnn", "best").version) == "2"
    client.log_metric(first, "test/acc", 0.995)  # a tie: the holder keeps it
    assert serving.move_alias("mnist_cnn", project) == "2"


def test_text_model_round_trip(tmp_path, store):
    from nnlab.stages.download import run as run_download
    from nnlab.stages.split import run as run_split
    from tests.test_imdb import imdb_params

    params = imdb_params()
    run_download(params, "imdb", tmp_path)
    run_split(params, "imdb", tmp_path)
    _train_evaluate(params, "imdb_gru", tmp_path)
    assert serving.log_best_model(params, "imdb_gru", tmp_path) == "1"
    reviews = ["the acting was not bad at all, a good film", "not good. boring and dull",
               "zzzz qqqq"]  # unknown words are <unk>, as for nnlab predict
    files = []
    for i, text in enumerate(reviews):
        files.append(tmp_path / f"review{i}.txt")
        files[-1].write_text(text)
    expected = predict(params, "imdb_gru", [str(f) for f in files], tmp_path)
    store(tmp_path)
    model = mlflow.pyfunc.load_model("models:/imdb_gru@best")
    out = model.predict(pd.DataFrame({"text": [*reviews, "  ...  "]}))
    for row, want in zip(out.itertuples(), expected, strict=False):
        assert row.label == want["label"]
        assert row.p_positive == pytest.approx(want["probabilities"]["positive"], abs=1e-4)
    assert out["error"].iloc[-1] == "row 3: no words to classify"
    # the input example the UI shows is real test reviews, as text
    example = model.input_example
    assert list(example.columns) == ["text"] and len(example) == 2
    assert all(isinstance(t, str) and t for t in example["text"])


def test_log_model_false_logs_and_registers_nothing(project):
    params = tiny_params(**{"tracking.log_model": False})
    run_id = _train_evaluate(params, "mnist_mlp", project)
    assert serving.log_best_model(params, "mnist_mlp", project) is None
    client = tracking.client(project)
    assert client.search_registered_models() == []
    assert client.get_run(run_id).outputs.model_outputs == []
    experiment = client.get_experiment_by_name("mnist").experiment_id
    assert client.search_logged_models(experiment_ids=[experiment]) == []


def test_the_model_goes_to_the_projects_store_whatever_mlflow_was_set_to(project, tmp_path,
                                                                        monkeypatch):
    params = tiny_params()
    _train_evaluate(params, "mnist_mlp", project)
    # MLflow's global URI left on another store (an earlier MLFlowLogger in this process: the
    # variable it also set has gone, as between two tests)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    mlflow.set_tracking_uri(other)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    try:
        assert serving.log_best_model(params, "mnist_mlp", project) == "1"
        assert mlflow.get_tracking_uri() == other
    finally:
        mlflow.set_tracking_uri(tracking.resolve_uri(project))
    assert [m.name for m in tracking.client(project).search_registered_models()] == ["mnist_mlp"]


def test_a_run_the_store_lacks_logs_nothing(project, capfd):
    params = tiny_params()
    _train_evaluate(params, "mnist_mlp", project)
    receipt = tracking.read_receipt(project / "models/mnist_mlp")
    tracking.write_receipt(project / "models/mnist_mlp", {**receipt, "run_id": "0" * 32})
    assert serving.log_best_model(params, "mnist_mlp", project) is None
    assert "is not in" in capfd.readouterr().err
    assert tracking.client(project).search_registered_models() == []


def test_a_head_on_a_features_cache_serves_raw_photos(tmp_path, store):
    """The registered model of a head trained on cached features carries the frozen base and
    classifies encoded photos, as nnlab predict does; its inputs are the cache's splits."""
    from nnlab.stages.features import run as run_features
    from tests.test_transfer import HEAD, cache_params, make_split

    make_split(tmp_path)
    params = cache_params(head=HEAD)
    run_features(params, "cats_lite0", tmp_path)
    run_id = train(params, "head", tmp_path)["run_id"]
    digests = tracking.log_datasets(run_id, "cats_lite0", tmp_path)
    assert digests[2] == split_digest(load_arrays("cats_lite0", "test", tmp_path))
    inputs = tracking.client(tmp_path).get_run(run_id).inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"cats_lite0"}
    assert all(("nnlab.derived_from", "cats_vs_dogs") in {(t.key, t.value) for t in i.tags}
               for i in inputs)
    evaluate(params, "head", tmp_path)  # registers the model (base and head) as version 1
    client = tracking.client(tmp_path)
    assert str(client.get_model_version_by_alias("head", "best").version) == "1"
    photos = np.load(tmp_path / "data/split/cats_vs_dogs/test_x.npy")[:3]
    files = []
    for i, img in enumerate(photos):
        files.append(tmp_path / f"p{i}.png")
        Image.fromarray(img).save(files[-1])
    expected = predict(params, "head", [str(f) for f in files], tmp_path)
    store(tmp_path)
    out = mlflow.pyfunc.load_model("models:/head@best").predict(
        pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    for row, want in zip(out.itertuples(), expected, strict=True):
        assert row.label == want["label"]
        assert row.p_dogs == pytest.approx(want["probabilities"]["dogs"], abs=1e-4)


def test_a_failed_model_upload_leaves_the_training_run_as_it_was(project, monkeypatch):
    params = tiny_params()
    run_id = _train_evaluate(params, "mnist_mlp", project)
    client = tracking.client(project)
    before = client.get_run(run_id).info

    def refuse(**kwargs):
        raise OSError("artifact store full")

    monkeypatch.setattr(mlflow.pyfunc, "log_model", refuse)
    with pytest.raises(OSError, match="artifact store full"):
        serving.log_best_model(params, "mnist_mlp", project)
    after = client.get_run(run_id).info
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)
    assert client.search_registered_models() == []
