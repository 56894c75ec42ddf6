"""Clumsy and damaged input: names that collide on macOS and Windows are refused at load, and
every corrupt or truncated file nnlab reads is one line naming it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nnlab import tracking
from nnlab.config import ConfigError
from nnlab.files import load_array
from nnlab.stages import compare
from tests.conftest import TINY, tiny_params


@pytest.mark.parametrize(
    ("overrides", "first", "second"),
    [
        (
            {"experiments.MNIST_mlp": TINY["experiments"]["mnist_mlp"]},
            "experiments.mnist_mlp",
            "experiments.MNIST_mlp",
        ),
        (
            {"features.Mnist": {"from": "mnist", "backbone": "vgg16"}},
            "data.mnist",
            "features.Mnist",
        ),
    ],
)
def test_names_that_differ_only_in_case_are_refused(overrides, first, second):
    with pytest.raises(ConfigError) as err:
        tiny_params(**overrides)
    assert f"{second}: differs from {first} only in case" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{oops", "not a valid JSON file"),
        ("[1, 2]", "not a run receipt"),
        ('{"status": "FINISHED"}', "not a run receipt"),
    ],
)
def test_a_damaged_receipt_is_one_line_naming_it(tmp_path, content, reason):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(ValueError, match=f"^{tmp_path}/run.json: {reason}"):
        tracking.read_receipt(tmp_path)


@pytest.mark.parametrize("metrics", ["{}", '{"test/acc": "high", "test/loss": 1}', "[]"])
def test_compare_names_an_evaluation_it_cannot_read(tmp_path, metrics):
    report = tmp_path / "reports/experiments/mnist_mlp"
    report.mkdir(parents=True)
    (report / "metrics.json").write_text(metrics)
    (report / "run.json").write_text(
        json.dumps({"dataset": "mnist", "model": "mlp", "params_total": 10})
    )
    with pytest.raises(
        ValueError,
        match=f"^{report}: metrics.json and run.json are not what evaluate@mnist_mlp writes",
    ):
        compare.run(tiny_params(), tmp_path)


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_mlflow_store_is_one_line_naming_it(tmp_path, damage):
    good = tmp_path / "good"
    tracking.ensure_experiment("mnist", good)
    db = tmp_path / "bad/mlruns/mlflow.db"
    db.parent.mkdir(parents=True)
    data = (good / "mlruns/mlflow.db").read_bytes()
    db.write_bytes(
        np.random.default_rng(0).bytes(4096) if damage == "random bytes" else data[:20000]
    )
    with pytest.raises(RuntimeError, match=f"^{db}: not a readable MLflow store"):
        tracking.client(tmp_path / "bad")


def test_a_moved_store_never_writes_into_its_old_folder(tmp_path):
    """A copied mlruns/ names the artifact folders of the project it came from: refused."""
    tracking.ensure_experiment("mnist", tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with pytest.raises(RuntimeError, match=f"keeps artifacts in {tmp_path}/a/mlruns/.*outside"):
        tracking.ensure_experiment("mnist", tmp_path / "b")


DAMAGED_ARRAYS = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:500]),
    "empty": lambda path: path.write_bytes(b""),
    "pickle": lambda path: path.write_bytes(b"\x80\x04K\x01."),
    "npz": lambda path: (
        np.savez(path.with_suffix(""), x=[1]) or path.with_suffix(".npz").rename(path)
    ),
    "objects": lambda path: np.save(path, np.array([{}], dtype=object), allow_pickle=True),
}


@pytest.mark.parametrize("damage", DAMAGED_ARRAYS)
def test_a_damaged_array_is_one_line_naming_it(tmp_path, damage):
    path = tmp_path / "test_x.npy"
    np.save(path, np.arange(1000))
    DAMAGED_ARRAYS[damage](path)
    with pytest.raises(ValueError, match=f"^{path}: not a") as err:
        load_array(path)
    assert "\n" not in str(err.value) and "allow_pickle" not in str(err.value)


def test_evaluate_refuses_to_run_as_a_rank_other_than_0(tmp_path, monkeypatch):
    """It would write its files, log nothing and, its log being rank 0's, say nothing."""
    from nnlab.stages.evaluate import run as evaluate

    monkeypatch.setenv("SLURM_PROCID", "1")
    with pytest.raises(RuntimeError, match="evaluate@mnist_mlp runs as one process.*SLURM_PROC"):
        evaluate(tiny_params(), "mnist_mlp", tmp_path)
    assert list(tmp_path.iterdir()) == []
