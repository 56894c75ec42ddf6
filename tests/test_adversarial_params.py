"""Hostile params files: each gets one line naming the key and the value, exit status 2, and
nothing written anywhere (the command runs in tmp_path; its parent is watched too)."""

from __future__ import annotations

import copy
import functools
import os

import pytest
import yaml

from nnlab.cli import main

VALID = {
    "seed": 1,
    "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
    "data": {
        "mnist": {"kind": "mnist", "source": "bundled"},
        "cats_vs_dogs": {"kind": "image_folder", "source": "synthetic"},
    },
    "features": {"cvd": {"from": "cats_vs_dogs", "backbone": "vgg16"}},
    "experiments": {
        "m": {"dataset": "mnist", "model": "mlp", "epochs": 1},
        "h": {"dataset": "cvd", "model": "mlp", "epochs": 2, "optimizer": "rmsprop"},
    },
}
HEX = "0123456789abcdef" * 4
HEAD = "data: {mnist: {kind: mnist}}\nexperiments: "


def raw_with(**overrides) -> dict:
    """VALID with overrides of dotted keys."""
    raw = copy.deepcopy(VALID)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        functools.reduce(lambda node, key: node.setdefault(key, {}), parents, raw)[leaf] = value
    return raw


def bad(key: str, value, *expected: str) -> tuple[dict, list[str]]:
    """VALID with ``key`` set to ``value``; the error must name the key and each ``expected``."""
    return raw_with(**{key: value}), [key, *expected]


def affine(**args) -> list[dict]:
    return [{"name": "Affine", "args": args}]


def listing(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_cli(tmp_path, monkeypatch, capsys, content, args=("download", "mnist")):
    """Write params.yaml (a dict as YAML, str or bytes as is), run nnlab in tmp_path: the exit
    status and the one line it says."""
    path = tmp_path / "params.yaml"
    if callable(content):  # makes something else there, or nothing
        content(path)
    else:
        content = yaml.safe_dump(content) if isinstance(content, dict) else content
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.chdir(tmp_path)
    before, around = listing(tmp_path), set(os.listdir(tmp_path.parent))
    code = main(list(args))
    err = capsys.readouterr().err
    assert listing(tmp_path) == before, "the command wrote files"
    assert set(os.listdir(tmp_path.parent)) == around, "the command wrote outside its folder"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnlab: error: "), err
    return code, lines[0]


CASES = {
    "string-for-int": bad("experiments.m.batch_size", "64", "'64'"),
    "bool-for-int": bad("experiments.m.epochs", True, "true"),
    # (safe_dump writes the string 1e-3 unquoted; the loader reads 1e-3 as a float)
    "quoted-float": (
        yaml.safe_dump(VALID).replace("epochs: 1\n", "epochs: 1\n    lr: '1e-3'\n"),
        ["experiments.m.lr", "'1e-3'"],
    ),
    "float-for-int": bad("seed", 1.5, "1.5"),
    "too-big": bad("seed", 2**40, str(2**40)),
    "inf": (HEAD + "{m: {dataset: mnist, model: mlp, epochs: 1, lr: .inf}}", ["m.lr", "inf"]),
    "list-length": bad("data.cats_vs_dogs.split_sizes", [1, 2], "[1, 2]"),
    "either-shape": bad("loader.threads", 0, "0"),
    "not-a-source": bad("data.cats_vs_dogs.source", "bundled", "'bundled'"),
    "int-key": (HEAD + "{1: {dataset: mnist, model: mlp, epochs: 1}}", ["key 1 is not a string"]),
    "null-block": (HEAD + "{m: null}", ["experiments.m: expected a mapping", "null"]),
    "reserved-max_epochs": bad("trainer.max_epochs", 5, "experiments.<name>.epochs"),
    "moved-num_workers": bad("trainer.num_workers", 2, "loader.num_workers"),
    "unknown-key": bad("data.mnist.vocab_size", 100, "unknown key", "val_fraction"),
    "dataset-without-kind": bad("data.cifar", {}, "data.cifar.kind", "image_folder", "missing"),
    "unknown-kind": bad("data.cifar", {"kind": "cifar"}, "data.cifar.kind", "text_table"),
    "no-path-nor-mirrors": bad("data.pets", {"kind": "image_folder"}, "pets.path", "required"),
    "one-class": bad("data.cats_vs_dogs.classes", ["cats"], "at least two"),
    "features-from-text": (
        raw_with(**{"data.t": {"kind": "text_table", "path": "t.csv"}, "features.cvd.from": "t"}),
        ["features.cvd.from", "text_table", "cats_vs_dogs"],
    ),
    "alias-spelled-as-field": bad("features.cvd.from_", "mnist", "unknown key"),
    "mirror-colon-pin": bad(
        "data.mnist.mirrors", ["https://a.org/x#sha256:" + HEX], "mirrors[0]", "sha256=<64 hex>"
    ),
    "mirror-ftp": bad("data.mnist.mirrors", ["ftp://a.org/x.zip"], "mirrors[0]", "ftp://"),
    "mirror-a-path": bad("data.mnist.mirrors", ["../../etc/passwd"], "../../etc/passwd"),
    "name-dotdot": (HEAD + "{../../x: {}}", ["experiments", "'../../x'", "not an identifier"]),
    "missing": (HEAD + "{m: {dataset: mnist, model: mlp}}", ["m.epochs: required key missing"]),
    "unknown-dataset": bad("experiments.m.dataset", "cifar", "'cifar'", "cvd"),
    "features-from-unknown": bad("features.cvd.from", "imagenet", "'imagenet'"),
    "features-named-as-dataset": bad("features.mnist", VALID["features"]["cvd"], "data.mnist"),
    "bucket-without-lengths": bad("experiments.m.bucket_by_length", True, "'mnist'"),
    "momentum-adam": bad("experiments.m.momentum", 0.9, "adam has no momentum", "0.9"),
    "unfreeze-never": bad("experiments.h.finetune", {"unfreeze_epoch": 2}, ">= epochs (2)"),
    "negative": bad("experiments.h.finetune", {"unfreeze_epoch": -1}, "unfreeze_epoch", "-1"),
    "warmup-too-long": bad("experiments.m.warmup_epochs", 99, "warmup_epochs: 99", "> epochs"),
    "unknown-schedule": bad("experiments.m.lr_schedule", "step", "lr_schedule", "'step'"),
    "mapping-for-list": bad("experiments.m.augment", {"name": "Blur"}, "a mapping"),
    "fractions-sum": bad("data.mnist.test_fraction", 0.9, "0.1 + 0.9"),
    "duplicate-key": (
        HEAD + "\n  m:\n    dataset: mnist\n    model: mlp\n    epochs: 1\n    epochs: 2\n",
        ["params.yaml: line 7", 'duplicate key "epochs"', 'original value: "1"'],
    ),
    "invalid-yaml": ("seed: 1\nexperiments: [\n  m: {a: 1\n", ["params.yaml: line", "column"]),
    "top-level-list": ("- seed\n- 1\n", ["params.yaml", "expected a mapping", "a list of 2"]),
    "missing-file": (lambda path: None, ["params.yaml: not found (run nnlab from the project"]),
    "fifo": (os.mkfifo, ["params.yaml: is a named pipe (FIFO), not a regular file"]),  # blocks
    "empty-file": ("", ["params.yaml", "empty file"]),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ["params.yaml", "not UTF-8 text"]),
    "nul-bytes": ("seed: 1\x00\n", ["params.yaml", "not text (it holds NUL bytes)"]),
    "nested-maps": ("{a: " * 5000 + "1" + "}" * 5000 + "\n", ["nested too deeply"]),
    "huge-file": ("# " + "x" * (2**20 + 10) + "\n", ["bytes; a params file is text of at most"]),
    "huge-mapping": bad("experiments.m.epochs", {f"k{i}": 1 for i in range(300)}, "of 300 keys"),
    "huge-list": bad("experiments.m.batch_size", list(range(10000)), "a list of 10000"),
    "huge-string": bad("experiments.m.lr", "x" * 100000, "xxxx..."),
    # what only the model registry, albumentations and Lightning can judge: train refuses it
    # before it reads data or touches models/ (nothing exists, yet the error is about params)
    "unknown-model": bad("experiments.m.model", "resnet9000", "'resnet9000'"),
    "unknown-model-option": bad("experiments.m.model_options", {"widht": 3}, "model_options.widht"),
    "model-option-type": bad("experiments.m.model_options", {"hidden": "big"}, "hidden", "'big'"),
    "augment-bad-arg": bad("experiments.m.augment", affine(rotat=3), "augment[0]", "rotat"),
    "trainer-cpu-devices": bad("trainer.devices", 10**5, "100000 processes", "cores"),
    "trainer-unknown-key": bad("trainer.epochz", 3, "unexpected keyword argument 'epochz'"),
    "trainer-string-for-number": bad("trainer.limit_train_batches", "0.1", "'0.1'"),
    "trainer-bool-for-int": bad("trainer.limit_train_batches", True, "true"),
    "trainer-inf": bad("trainer.gradient_clip_val", float("inf"), "inf"),
    "trainer-precision": bad("trainer.precision", "8-mixed", "'8-mixed'"),
    "trainer-strategy-needs-gpu": bad("trainer.strategy", "fsdp", "'fsdp'", "GPU"),
    "trainer-no-devices": bad("trainer.devices", [], "[]"),
    "trainer-fraction": bad("trainer.limit_val_batches", 1.5, "1.5"),
    "trainer-nodes": bad("trainer.num_nodes", 0, "0", "positive"),
    # no machine here has 64 GPUs: Lightning refuses the accelerator (no GPU) or the devices
    "trainer-gpus": (
        raw_with(**{"trainer.accelerator": "gpu", "trainer.devices": 64}),
        ["trainer.", "gpu"],
    ),
}


@pytest.mark.parametrize(("content", "expected"), CASES.values(), ids=CASES)
def test_bad_params_one_line_before_any_file(tmp_path, monkeypatch, capsys, content, expected):
    code, line = run_cli(tmp_path, monkeypatch, capsys, content, ["train", "m"])
    assert code == 2 and len(line) < 500, line
    for part in expected:
        assert part in line, line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "nope"], "no experiment 'nope'"),
        (["download", "imdb"], "no dataset 'imdb'"),
        (["download", "../x"], "'../x'"),  # not an identifier: a ConfigError too
        (["features", "mnist"], "no features cache 'mnist' under features: (known: cvd)"),
        (["--params", ".", "train", "m"], "nnlab: error: .: is a folder, not a file"),
    ],
)
def test_unknown_names_on_the_command_line(tmp_path, monkeypatch, capsys, args, expected):
    code, line = run_cli(tmp_path, monkeypatch, capsys, VALID, args)
    assert code == 2 and expected in line, line
