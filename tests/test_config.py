"""params.yaml as the stages see it: lookups, what reaches Lightning and MLflow, and the shipped
params passing every check. Bad input is tests/test_adversarial_params.py."""

import pytest

from nnlab.checks import check_experiment
from nnlab.config import ConfigError, load_params
from tests.conftest import REPO, with_overrides
from tests.test_adversarial_params import VALID


def test_repo_experiments_pass_every_check():
    params = load_params(REPO / "params.yaml")
    for name in params.experiments:
        check_experiment(params, name)  # model options, augment steps, trainer:


def test_trainer_block_reaches_lightning():
    import lightning as L

    trainer = {"limit_train_batches": 0.25, "gradient_clip_val": 1.0, "precision": 64}
    params = with_overrides(VALID, **{f"trainer.{k}": v for k, v in trainer.items()})
    check_experiment(params, "m")  # nnlab's defaults plus what is written
    built = L.Trainer(**params.trainer.kwargs(), logger=False, enable_checkpointing=False)
    assert (built.limit_train_batches, built.gradient_clip_val) == (0.25, 1.0)
    assert built.precision == "64-true"  # an int, as Lightning takes it
    assert params.flat("m")["trainer.limit_train_batches"] == 0.25


def test_yaml_floats_as_dvc_reads_them_and_merge_keys(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "data: {mnist: {kind: mnist, source: bundled}}\n"
        "experiments:\n  a: &a {dataset: mnist, model: mlp, epochs: 1, lr: 1e-3}\n"
        "  b: {<<: *a, epochs: 2}\n"
    )
    params = load_params(path)
    assert params.experiment("a").lr == 0.001 and params.experiment("b").epochs == 2


def test_source_dataset_lookups_name_what_is_known():
    params = with_overrides(VALID)
    with pytest.raises(ConfigError, match="known: mnist, cats_vs_dogs"):
        params.source_dataset("nope")
    assert params.source_dataset("mnist") == "mnist"
    assert params.source_dataset("cvd") == "cats_vs_dogs"


def test_flat_params_hold_exactly_what_shapes_the_experiment_as_written():
    mirrors = ["https://x.org/a#sha256=" + "a" * 64, "http://b#md5=" + "0" * 32, "file:///c.gz"]
    params = with_overrides(
        VALID,
        **{"data.mnist.mirrors": mirrors, "experiments.h.finetune": {"backbone_lr": 1e-5}},
    )
    flat = params.flat("m")
    assert flat["experiment.epochs"] == 1 and flat["seed"] == 1
    assert flat["trainer.accelerator"] == "cpu" and flat["loader.num_workers"] == 0
    assert flat["data.mnist.mirrors"] == mirrors
    assert not any(k.startswith(("features.", "data.cats_vs_dogs")) for k in flat)
    derived = params.flat("h")
    assert derived["features.cvd.from"] == "cats_vs_dogs"
    assert derived["data.cats_vs_dogs.source"] == "synthetic"
    assert derived["experiment.finetune.backbone_lr"] == 1e-5
    assert "data.mnist.source" not in derived
