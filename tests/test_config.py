import copy
import inspect
import typing
from pathlib import Path

import pytest
import yaml

from nnlab.cli import main
from nnlab.config import (
    PRECISIONS,
    RESERVED,
    STRATEGIES,
    TRAINER_KEYS,
    ConfigError,
    TrainerConfig,
    check_experiment,
    load_params,
    parse_params,
)
from tests.conftest import with_overrides

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "seed": 7,
    "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
    "data": {"mnist": {"source": "bundled", "max_samples": 400, "test_fraction": 0.25},
             "cats_vs_dogs": {"source": "synthetic"}},
    "features": {"cvd_vgg": {"from": "cats_vs_dogs", "backbone": "vgg16"}},
    "experiments": {
        "mnist_mlp": {"dataset": "mnist", "model": "mlp", "epochs": 2,
                      "model_options": {"hidden": 32}},
        "mnist_cnn": {"dataset": "mnist", "model": "cnn_small", "epochs": 2, "batch_size": 32},
        "head": {"dataset": "cvd_vgg", "model": "mlp", "epochs": 3, "optimizer": "rmsprop"},
    },
}


def small(**overrides):
    """SMALL parsed, with dotted-key overrides: ``small(**{"experiments.x.epochs": 3})``."""
    return with_overrides(SMALL, **overrides)


def test_repo_params_load():
    params = load_params(REPO / "params.yaml")
    assert params.experiment("mnist_cnn").dataset == "mnist"
    assert params.features_of("cats_vs_dogs_vgg16").from_ == "cats_vs_dogs"
    feat = params.experiment("catdog_vgg16_features")
    assert (feat.dataset, feat.model) == ("cats_vs_dogs_vgg16", "mlp")
    assert params.source_dataset(feat.dataset) == "cats_vs_dogs"
    assert params.experiment("catdog_vgg16_finetune").finetune.unfreeze_epoch == 2
    assert "packed" not in params.experiment("imdb_gru").model_options  # the fast default
    assert params.loader.threads == "auto"
    assert params.trainer.kwargs()["enable_progress_bar"] is True


def test_trainer_keys_follow_lightning():
    import lightning as L

    signature = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    assert set(TRAINER_KEYS) == signature - set(RESERVED)
    assert set(RESERVED) <= signature


def test_strategies_follow_lightning():
    from lightning.pytorch.strategies import StrategyRegistry

    assert set(STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}


def test_precisions_follow_lightning():
    from lightning.fabric.connector import _PRECISION_INPUT

    accepted = {v for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg)}
    assert set(PRECISIONS) == accepted
    assert small(**{"trainer.precision": 16}).trainer.precision == 16


def test_trainer_kwargs_defaults_and_pass_through():
    assert TrainerConfig().kwargs() == {
        "accelerator": "auto", "devices": "auto", "strategy": "auto", "num_nodes": 1,
        "precision": "32-true", "deterministic": "warn", "log_every_n_steps": 10,
        "enable_progress_bar": True,
    }
    t = small(**{"trainer.limit_train_batches": 0.25, "trainer.gradient_clip_val": 1.0}).trainer
    assert t.kwargs()["limit_train_batches"] == 0.25
    assert t.kwargs()["gradient_clip_val"] == 1.0


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("experiments.mnist_cnn.epochs", 0, "experiments.mnist_cnn.epochs"),
        ("experiments.mnist_cnn.epcohs", 3, "experiments.mnist_cnn.epcohs: unknown key"),
        ("experiments.mnist_cnn.lr", "fast", "experiments.mnist_cnn.lr"),
        ("experiments.mnist_cnn.dataset", "cifar", "'cifar'"),
        ("experiments.mnist_cnn.optimizer", "lion", "'lion'"),
        ("experiments.mnist_cnn.init_from", "mnist_mlp", "init_from: unknown key"),
        ("data.mnist.val_fraction", 1.5, "data.mnist.val_fraction"),
        ("data.mnist.test_fraction", 0.95, "val_fraction + test_fraction must be < 1"),
        ("data.mnist.source", "ftp", "'ftp'"),
        ("data.cats_vs_dogs.split_sizes", [1, 2], "data.cats_vs_dogs.split_sizes"),
        ("data.cats_vs_dogs.image_size", 4096, "data.cats_vs_dogs.image_size"),
        ("trainer.num_nodes", 0, "trainer.num_nodes"),
        ("loader.threads", 0, "loader.threads"),
        ("loader.pin_memory", "yes", "loader.pin_memory"),
        ("features.cvd_vgg.backbone", "resnet", "features.cvd_vgg.backbone"),
        ("features.cvd_vgg.batch_size", 0, "features.cvd_vgg.batch_size"),
    ],
)
def test_bad_values_name_key_and_value(key, value, expected):
    with pytest.raises(ConfigError) as err:
        small(**{key: value})
    assert expected in str(err.value)
    assert str(value) in str(err.value) or "unknown key" in expected


def test_unknown_model_is_named():
    with pytest.raises(ConfigError, match=r"experiments\.mnist_cnn\.model: .*'resnet9000'"):
        small(**{"experiments.mnist_cnn.model": "resnet9000"})


@pytest.mark.parametrize("options", [{"widht": 3}, {"hidden": "big"}])
def test_model_options_checked_against_the_builder(options):
    key = next(iter(options))
    with pytest.raises(ConfigError, match=rf"experiments\.mnist_mlp\.model_options\.{key}"):
        small(**{"experiments.mnist_mlp.model_options": options})


def test_yaml_floats_read_as_dvc_reads_them(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data: {mnist: {}}\n"
                    "experiments: {a: {dataset: mnist, model: mlp, epochs: 1, lr: 1e-3}}\n")
    assert load_params(path).experiment("a").lr == 0.001
    path.write_text(path.read_text().replace("1e-3", '"1e-3"'))
    with pytest.raises(ConfigError, match=r"experiments\.a\.lr: .*'1e-3'"):
        load_params(path)


def test_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "data: {mnist: {source: bundled}}\n"
        "experiments:\n  a: &a {dataset: mnist, model: mlp, epochs: 1}\n"
        "  b: {<<: *a, epochs: 2}\n"
    )
    assert load_params(path).experiment("b").epochs == 2


def test_mirror_pins_accepted():
    mirrors = ["https://x.org/a.zip#sha256=" + "a" * 64, "http://x.org/b#md5=" + "0" * 32,
               "file:///tmp/c.tar.gz"]
    assert small(**{"data.mnist.mirrors": mirrors}).dataset("mnist").mirrors == mirrors


def test_experiment_needs_its_dataset_block():
    raw = dict(copy.deepcopy(SMALL), data={"mnist": {}})
    with pytest.raises(ConfigError, match="features.cvd_vgg.from: .*'cats_vs_dogs'"):
        parse_params(raw)


def test_lookups_name_what_is_known():
    params = small()
    with pytest.raises(ConfigError, match="mnist_cnn"):
        params.experiment("nope")
    with pytest.raises(ConfigError, match="cats_vs_dogs"):
        params.dataset("imdb")
    with pytest.raises(ConfigError, match="mnist"):
        params.features_of("nope")
    assert params.features_of("mnist") is None
    assert params.source_dataset("cvd_vgg") == "cats_vs_dogs"


def test_flat_params_cover_experiment_trainer_loader_data():
    flat = small().flat("mnist_cnn")
    assert flat["experiment.epochs"] == 2
    assert flat["trainer.accelerator"] == "cpu"
    assert flat["loader.num_workers"] == 0
    assert flat["data.mnist.source"] == "bundled"
    assert flat["seed"] == 7
    assert not any(k.startswith(("features.", "data.cats_vs_dogs")) for k in flat)
    derived = small().flat("head")
    assert derived["features.cvd_vgg.from"] == "cats_vs_dogs"
    assert derived["data.cats_vs_dogs.source"] == "synthetic"
    assert "data.mnist.source" not in derived


def test_finetune_is_typed():
    ok = small(**{"experiments.head.finetune": {"unfreeze_epoch": 1, "backbone_lr": 1e-5}})
    assert ok.experiment("head").finetune.backbone_lr == 1e-5
    with pytest.raises(ConfigError, match=r"finetune.unfreeze_epoch: 3 >= epochs \(3\)"):
        small(**{"experiments.head.finetune": {"unfreeze_epoch": 3}})


def test_repo_experiments_pass_the_runtime_checks():
    params = load_params(REPO / "params.yaml")
    for name in params.experiments:
        check_experiment(params, name)  # augment steps build, Lightning takes trainer:


def test_check_experiment_builds_augment_steps():
    steps = [{"name": "HorizontalFlip", "args": {"p": 0.5}},
             {"name": "Affine", "args": {"rotat": 3}}]
    params = small(**{"experiments.mnist_cnn.augment": steps})
    with pytest.raises(ConfigError, match=r"experiments\.mnist_cnn\.augment\[1\]: Affine"):
        check_experiment(params, "mnist_cnn")
    check_experiment(small(), "mnist_cnn")


def test_check_experiment_asks_lightning():
    params = small(**{"trainer.strategy": "fsdp"})
    with pytest.raises(ConfigError, match="trainer: Lightning rejects it: .*fsdp"):
        check_experiment(params, "mnist_cnn")


def test_check_experiment_counts_gpus():
    import torch

    params = small(**{"trainer.accelerator": "gpu",
                      "trainer.devices": torch.cuda.device_count() + 1})
    with pytest.raises(ConfigError, match="trainer.devices: .* CUDA devices"):
        check_experiment(params, "mnist_cnn")


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


