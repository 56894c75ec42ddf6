"""params.yaml as the stages see it: lookups, what reaches Lightning and MLflow, and the shipped
params passing every check. Bad input is tests/test_adversarial_params.py."""

from pathlib import Path

import pytest

from nnlab.checks import check_experiment
from nnlab.config import ConfigError, load_params
from tests.conftest import with_overrides

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "seed": 7,
    "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
    "data": {
        "mnist": {"kind": "mnist", "source": "bundled", "max_samples": 400, "test_fraction": 0.25},
        "cats_vs_dogs": {"kind": "image_folder", "source": "synthetic"},
    },
    "features": {"cvd_vgg": {"from": "cats_vs_dogs", "backbone": "vgg16"}},
    "experiments": {
        "mnist_mlp": {
            "dataset": "mnist",
            "model": "mlp",
            "epochs": 2,
            "model_options": {"hidden": 32},
        },
        "mnist_cnn": {"dataset": "mnist", "model": "cnn_small", "epochs": 2, "batch_size": 32},
        "head": {"dataset": "cvd_vgg", "model": "mlp", "epochs": 3, "optimizer": "rmsprop"},
    },
}


def small(**overrides):
    """SMALL parsed, with dotted-key overrides: ``small(**{"experiments.x.epochs": 3})``."""
    return with_overrides(SMALL, **overrides)


def test_repo_experiments_pass_every_check():
    params = load_params(REPO / "params.yaml")
    for name in params.experiments:
        check_experiment(params, name)  # model options, augment steps, trainer:


def test_trainer_block_reaches_lightning():
    import lightning as L

    params = small(
        **{
            "trainer": {
                "limit_train_batches": 0.25,
                "gradient_clip_val": 1.0,
                "precision": 64,
                "accelerator": "cpu",
            }
        }
    )
    check_experiment(params, "mnist_cnn")  # nnlab's defaults plus what is written
    trainer = L.Trainer(**params.trainer.kwargs(), logger=False, enable_checkpointing=False)
    assert (trainer.limit_train_batches, trainer.gradient_clip_val) == (0.25, 1.0)
    assert trainer.precision == "64-true"  # an int, as Lightning takes it
    assert params.flat("mnist_cnn")["trainer.limit_train_batches"] == 0.25


def test_yaml_floats_read_as_dvc_reads_them(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "data: {mnist: {kind: mnist}}\n"
        "experiments: {a: {dataset: mnist, model: mlp, epochs: 1, lr: 1e-3}}\n"
    )
    assert load_params(path).experiment("a").lr == 0.001


def test_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "data: {mnist: {kind: mnist, source: bundled}}\n"
        "experiments:\n  a: &a {dataset: mnist, model: mlp, epochs: 1}\n"
        "  b: {<<: *a, epochs: 2}\n"
    )
    assert load_params(path).experiment("b").epochs == 2


def test_good_values_are_kept():
    mirrors = [
        "https://x.org/a.zip#sha256=" + "a" * 64,
        "http://x.org/b#md5=" + "0" * 32,
        "file:///tmp/c.tar.gz",
    ]
    params = small(
        **{
            "data.mnist.mirrors": mirrors,
            "experiments.head.finetune": {"unfreeze_epoch": 1, "backbone_lr": 1e-5},
        }
    )
    assert params.dataset("mnist").mirrors == mirrors
    assert params.experiment("head").finetune.backbone_lr == 1e-5


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
