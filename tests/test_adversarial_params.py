"""Hostile params files: each gets one line naming the key and the value, a nonzero exit, and
nothing written anywhere (the command runs in tmp_path; its parent is watched too)."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from nnlab.cli import main
from nnlab.config import ConfigError, load_params

VALID = {
    "seed": 1,
    "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
    "data": {"mnist": {"source": "bundled"}, "cats_vs_dogs": {"source": "synthetic"}},
    "features": {"cvd": {"from": "cats_vs_dogs", "backbone": "vgg16"}},
    "experiments": {
        "m": {"dataset": "mnist", "model": "mlp", "epochs": 1},
        "h": {"dataset": "cvd", "model": "mlp", "epochs": 2, "optimizer": "rmsprop"},
    },
}
HEX = "0123456789abcdef" * 4


def raw_with(**overrides) -> dict:
    """VALID with dotted-key overrides; a value of ``...`` deletes the key."""
    raw = copy.deepcopy(VALID)
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split("|") if "|" in dotted else dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return raw


def listing(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_cli(tmp_path, monkeypatch, capsys, content, args=("download", "mnist")):
    """Write params.yaml (a dict as YAML, str or bytes as is), run nnlab in tmp_path."""
    path = tmp_path / "params.yaml"
    if isinstance(content, dict):
        path.write_text(yaml.safe_dump(content))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    monkeypatch.chdir(tmp_path)
    before, around = listing(tmp_path), set(os.listdir(tmp_path.parent))
    code = main(list(args))
    err = capsys.readouterr().err
    assert listing(tmp_path) == before, "the command wrote files"
    assert set(os.listdir(tmp_path.parent)) == around, "the command wrote outside its folder"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nnlab: error: ")
    return code, lines[0]


CASES = [
    # (id, content, expected substrings)
    ("batch_size-string", raw_with(**{"experiments.m.batch_size": "64"}),
     ["experiments.m.batch_size", "'64'"]),
    ("epochs-bool", raw_with(**{"experiments.m.epochs": True}), ["experiments.m.epochs", "true"]),
    # (PyYAML's safe_dump writes the string 1e-3 unquoted; the loader reads 1e-3 as a float)
    ("lr-string", yaml.safe_dump(VALID).replace("epochs: 1\n", "epochs: 1\n    lr: '1e-3'\n"),
     ["experiments.m.lr", "'1e-3'"]),
    ("deterministic-string", raw_with(**{"trainer.deterministic": "true"}),
     ["trainer.deterministic", "'true'"]),
    ("seed-float", raw_with(seed=1.5), ["seed", "1.5"]),
    ("retries-huge", raw_with(**{"data.mnist.retries": 1000000}),
     ["data.mnist.retries", "1000000"]),
    ("timeout-zero", raw_with(**{"data.mnist.timeout": 0}), ["data.mnist.timeout", "0"]),
    ("accelerator", raw_with(**{"trainer.accelerator": "quantum"}),
     ["trainer.accelerator", "'quantum'"]),
    ("strategy", raw_with(**{"trainer.strategy": "ddpp"}), ["trainer.strategy", "'ddpp'"]),
    ("precision", raw_with(**{"trainer.precision": "8-mixed"}),
     ["trainer.precision", "'8-mixed'"]),
    ("precision-float", raw_with(**{"trainer.precision": 16.0}), ["trainer.precision", "16.0"]),
    ("clip-algorithm", raw_with(**{"trainer.gradient_clip_algorithm": "sideways"}),
     ["trainer.gradient_clip_algorithm", "'sideways'"]),
    ("limit-batches-string", raw_with(**{"trainer.limit_train_batches": "0.1"}),
     ["trainer.limit_train_batches", "'0.1'"]),
    ("limit-batches-fraction", raw_with(**{"trainer.limit_val_batches": 1.5}),
     ["trainer.limit_val_batches", "1.5"]),
    ("model-summary-null", raw_with(**{"trainer.enable_model_summary": "no"}),
     ["trainer.enable_model_summary", "'no'"]),
    ("seed-too-big", raw_with(seed=2**40), ["seed", str(2**40)]),
    ("lr-inf", "data: {mnist: {}}\nexperiments: {m: {dataset: mnist, model: mlp, epochs: 1, "
               "lr: .inf}}\n", ["experiments.m.lr", "inf"]),
    ("int-key", "data: {mnist: {}}\nexperiments: {1: {dataset: mnist, model: mlp, epochs: 1}}\n",
     ["experiments: key 1 is not a string"]),
    ("experiment-null", "data: {mnist: {}}\nexperiments: {m: null}\n",
     ["experiments.m: expected a mapping", "null"]),
    ("devices-string", raw_with(**{"trainer.devices": "two"}), ["trainer.devices", "'two'"]),
    ("devices-empty-list", raw_with(**{"trainer.devices": []}), ["trainer.devices", "[]"]),
    ("reserved-max_epochs", raw_with(**{"trainer.max_epochs": 5}),
     ["trainer.max_epochs", "experiments.<name>.epochs"]),
    ("reserved-callbacks", raw_with(**{"trainer.callbacks": []}), ["trainer.callbacks"]),
    ("reserved-logger", raw_with(**{"trainer.logger": True}), ["trainer.logger", "MLflow"]),
    ("old-num_workers", raw_with(**{"trainer.num_workers": 2}),
     ["trainer.num_workers", "loader.num_workers"]),
    ("old-progress_bar", raw_with(**{"trainer.progress_bar": False}),
     ["trainer.progress_bar", "enable_progress_bar"]),
    ("old-limit_batches", raw_with(**{"trainer.limit_batches": 0.1}),
     ["trainer.limit_batches", "limit_train_batches"]),
    ("old-channels_last", raw_with(**{"trainer.channels_last": True}),
     ["trainer.channels_last", "experiments.<name>.channels_last"]),
    ("trainer-unknown", raw_with(**{"trainer.epochz": 3}),
     ["trainer.epochz", "not an argument of lightning.Trainer"]),
    ("mnist-vocab_size", raw_with(**{"data.mnist.vocab_size": 100}),
     ["data.mnist.vocab_size: unknown key", "val_fraction"]),
    ("cats-source-bundled", raw_with(**{"data.cats_vs_dogs.source": "bundled"}),
     ["data.cats_vs_dogs.source", "'bundled'"]),
    ("imdb-image_size", raw_with(**{"data.imdb.image_size": 32}),
     ["data.imdb.image_size: unknown key"]),
    ("data-unknown-dataset", raw_with(**{"data.cifar": {}}), ["data.cifar: unknown key", "imdb"]),
    ("mirror-colon-pin", raw_with(**{"data.mnist.mirrors": ["https://a.org/x#sha256:" + HEX]}),
     ["data.mnist.mirrors[0]", "sha256=<64 hex>"]),
    ("mirror-short-pin", raw_with(**{"data.mnist.mirrors": ["https://a.org/",
                                                            "https://b.org/x#sha256=abc"]}),
     ["data.mnist.mirrors[1]", "#sha256=abc"]),
    ("mirror-md5-64", raw_with(**{"data.mnist.mirrors": ["https://a.org/x#md5=" + HEX]}),
     ["data.mnist.mirrors[0]", "md5="]),
    ("mirror-ftp", raw_with(**{"data.mnist.mirrors": ["ftp://a.org/x.zip"]}),
     ["data.mnist.mirrors[0]", "ftp://"]),
    ("mirror-not-a-url", raw_with(**{"data.mnist.mirrors": ["../../etc/passwd"]}),
     ["data.mnist.mirrors[0]", "../../etc/passwd"]),
    ("name-dotdot", raw_with(**{"experiments|../../x": {"dataset": "mnist", "model": "mlp",
                                                        "epochs": 1}}),
     ["experiments", "'../../x'", "not an identifier"]),
    ("name-empty", raw_with(**{"experiments|": {"dataset": "mnist", "model": "mlp",
                                                "epochs": 1}}),
     ["experiments", "''", "not an identifier"]),
    ("features-name-slash", raw_with(**{"features|a/b": {"from": "mnist", "backbone": "vgg16"}}),
     ["features", "'a/b'", "not an identifier"]),
    ("unknown-dataset", raw_with(**{"experiments.m.dataset": "cifar"}),
     ["experiments.m.dataset", "'cifar'", "cvd"]),
    ("dataset-without-block", raw_with(**{"experiments.m.dataset": "imdb"}),
     ["experiments.m.dataset", "'imdb'"]),
    ("features-from-unknown", raw_with(**{"features.cvd.from": "imagenet"}),
     ["features.cvd.from", "'imagenet'"]),
    ("features-name-is-dataset", raw_with(**{"features.mnist": {"from": "cats_vs_dogs",
                                                                "backbone": "vgg16"}}),
     ["features.mnist", "dataset"]),
    ("features-from-key", raw_with(**{"features.cvd.from_": "mnist"}),
     ["features.cvd.from_: unknown key"]),
    ("momentum-adam", raw_with(**{"experiments.m.momentum": 0.9}),
     ["experiments.m.momentum", "adam has no momentum", "0.9"]),
    ("finetune-unknown", raw_with(**{"experiments.h.finetune": {"unfreez_epoch": 1}}),
     ["experiments.h.finetune.unfreez_epoch: unknown key", "unfreeze_epoch"]),
    ("finetune-negative", raw_with(**{"experiments.h.finetune": {"unfreeze_epoch": -1}}),
     ["experiments.h.finetune.unfreeze_epoch", "-1"]),
    ("finetune-string-lr", raw_with(**{"experiments.h.finetune": {"backbone_lr": "slow"}}),
     ["experiments.h.finetune.backbone_lr", "'slow'"]),
    ("epochs-missing", raw_with(**{"experiments.m.epochs": ...}),
     ["experiments.m.epochs: required key missing"]),
    ("augment-not-a-list", raw_with(**{"experiments.m.augment": {"name": "Blur"}}),
     ["experiments.m.augment", "a mapping"]),
    ("fractions-sum", raw_with(**{"data.mnist.val_fraction": 0.5,
                                  "data.mnist.test_fraction": 0.5}),
     ["data.mnist.test_fraction", "0.5 + 0.5"]),
    ("duplicate-top", yaml.safe_dump(VALID) + "seed: 2\n", ["duplicate key", "'seed'", "line"]),
    ("duplicate-nested", "data: {mnist: {}}\nexperiments:\n  m:\n    dataset: mnist\n"
                         "    model: mlp\n    epochs: 1\n    epochs: 2\n",
     ["params.yaml: line 7", "duplicate key 'epochs'", "first on line 6"]),
    ("invalid-yaml", "seed: 1\nexperiments: [\n  m: {a: 1\n", ["params.yaml: line", "column"]),
    ("tab-indent", "seed: 1\n\texperiments: {}\n", ["params.yaml: line 2"]),
    ("top-level-list", "- seed\n- 1\n", ["params.yaml", "expected a mapping", "a list of 2"]),
    ("top-level-scalar", "hello\n", ["params.yaml", "expected a mapping", "'hello'"]),
    ("empty-file", "", ["params.yaml", "empty file"]),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ["params.yaml", "not a text file"]),
    ("nul-bytes", "seed: 1\x00\n", ["params.yaml", "not a text file"]),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_params_one_line(tmp_path, monkeypatch, capsys, content, expected):
    code, line = run_cli(tmp_path, monkeypatch, capsys, content)
    assert code == 2
    for part in expected:
        assert part in line, line
    assert len(line) < 500, line


def test_cpu_devices_beyond_the_cores(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    code, line = run_cli(tmp_path, monkeypatch, capsys,
                         raw_with(**{"trainer.devices": 7}))
    assert code == 2
    assert "trainer.devices: 7" in line and "2 cores" in line


def test_huge_values_are_not_dumped(tmp_path, monkeypatch, capsys):
    big = {f"k{i}": list(range(50)) for i in range(300)}
    raw = raw_with(**{"experiments.m.epochs": big, "experiments.m.lr": "x" * 100000,
                      "experiments.m.batch_size": list(range(10000))})
    code, line = run_cli(tmp_path, monkeypatch, capsys, raw)
    assert code == 2
    assert "a mapping of 300 keys" in line and "a list of 10000" in line
    assert "xxxx..." in line and len(line) < 500


def _one(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_folder_as_params(tmp_path, monkeypatch, capsys):
    (tmp_path / "conf").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["--params", "conf", "train", "m"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["nnlab: error: conf: is a folder, not a params file"]


def test_missing_params(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--params", "nope.yaml", "train", "m"]) == 2
    assert "nope.yaml: not found" in capsys.readouterr().err


def test_unknown_names_on_the_command_line(tmp_path, monkeypatch, capsys):
    for args, expected in ((["train", "nope"], "no experiment 'nope'"),
                           (["download", "imdb"], "no dataset 'imdb'"),
                           (["download", "../x"], "no dataset '../x'"),
                           (["features", "mnist"], "no features cache 'mnist' under features: "
                                                   "(known: cvd)")):
        code, line = run_cli(tmp_path, monkeypatch, capsys, VALID, args)
        assert code == 2 and expected in line, line


def test_not_a_regular_file(tmp_path, monkeypatch, capsys):
    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would block forever
    monkeypatch.chdir(tmp_path)
    assert main(["--params", "pipe.yaml", "train", "m"]) == 2
    assert _one(capsys) == "nnlab: error: pipe.yaml: not a regular file (a pipe or a device?)"


@pytest.mark.parametrize(("content", "expected"), [
    ("{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
    ("[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("# " + "x" * (2**20 + 10) + "\n", "bytes; a params file is text of at most 1 MiB"),
])
def test_pathological_files(tmp_path, monkeypatch, capsys, content, expected):
    code, line = run_cli(tmp_path, monkeypatch, capsys, content)
    assert code == 2 and expected in line and len(line) < 300, line


def test_precision_16_accepted(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_with(**{"trainer.precision": 16})))
    assert load_params(path).trainer.kwargs()["precision"] == 16


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"experiments.m.augment": [{"name": "Blur", "args": {"blur_limit": [3, 7]}},
                                    {"name": "NoSuchTransform"}]},
         ["experiments.m.augment[1]", "NoSuchTransform"]),
        ({"experiments.m.augment": [{"name": "Affine", "args": {"rotate": "lots"}}]},
         ["experiments.m.augment[0]", "Affine"]),
        ({"trainer.strategy": "fsdp"}, ["trainer:", "fsdp"]),
        ({"trainer.max_time": "banana"}, ["trainer:", "banana"]),
        ({"trainer.profiler": "nonsense"}, ["trainer:", "profiler"]),
    ],
)
def test_runtime_checks_before_any_file(tmp_path, monkeypatch, capsys, overrides, expected):
    """train runs check_experiment before it reads data or touches models/: nothing exists,
    yet the error is about params, not about the missing split, and nothing is written."""
    code, line = run_cli(tmp_path, monkeypatch, capsys, raw_with(**overrides), ["train", "m"])
    assert code == 2 and not (tmp_path / "models").exists()
    for part in expected:
        assert part in line, line


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
