from pathlib import Path

import pytest
import yaml

from nnlab.cli import main
from nnlab.config import ConfigError, load_params, parse_params
from tests.conftest import REPO, TINY, tiny_params


def test_repo_params_load():
    params = load_params(REPO / "params.yaml")
    assert "mnist_cnn" in params.experiments
    assert params.experiment("mnist_cnn").dataset == "mnist"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("experiments.mnist_cnn.epochs", 0, "experiments.mnist_cnn.epochs"),
        ("experiments.mnist_cnn.epcohs", 3, "experiments.mnist_cnn.epcohs: unknown key"),
        ("experiments.mnist_cnn.lr", "fast", "experiments.mnist_cnn.lr"),
        ("experiments.mnist_cnn.model", "resnet9000", "unknown model 'resnet9000'"),
        ("experiments.mnist_cnn.dataset", "cifar", "'cifar'"),
        ("experiments.mnist_cnn.optimizer", "lion", "'lion'"),
        ("experiments.mnist_cnn.model_options", {"widht": 3}, "no option 'widht'"),
        ("data.mnist.val_fraction", 1.5, "data.mnist.val_fraction"),
        ("data.mnist.source", "ftp", "'ftp'"),
        ("trainer.num_nodes", 0, "trainer.num_nodes"),
    ],
)
def test_bad_values_name_key_and_value(key, value, expected):
    with pytest.raises(ConfigError) as err:
        tiny_params(**{key: value})
    assert expected in str(err.value)
    assert str(value) in str(err.value) or "unknown key" in expected


def test_experiment_needs_its_dataset_block():
    raw = dict(TINY, data={})
    with pytest.raises(ConfigError, match="has no block under data"):
        parse_params(raw)


def test_unknown_experiment_lists_known():
    with pytest.raises(ConfigError, match="mnist_cnn"):
        tiny_params().experiment("nope")


def test_flat_params_cover_experiment_trainer_data():
    flat = tiny_params().flat("mnist_cnn")
    assert flat["experiment.epochs"] == 2
    assert flat["trainer.accelerator"] == "cpu"
    assert flat["data.mnist.source"] == "bundled"
    assert flat["seed"] == 7


def test_cli_bad_params_touch_nothing(tmp_path, monkeypatch, capsys):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["experiments"]["mnist_cnn"]["epochs"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["download", "mnist"]) == 2
    err = capsys.readouterr().err
    assert "experiments.mnist_cnn.epochs" in err and "0" in err
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["params.yaml"]


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
