import subprocess
import sys

import pytest
import torch

from nnlab.classifier import count_parameters
from nnlab.models.registry import build_model, check_options
from nnlab.spec import DataSpec
from nnlab.summary import summary_rows, summary_text

MNIST = DataSpec(kind="image", input_shape=(1, 28, 28), classes=tuple("0123456789"))
CATDOG = DataSpec(kind="image", input_shape=(3, 150, 150), classes=("cats", "dogs"))


@pytest.mark.parametrize(
    ("model", "spec", "total", "logits"),
    [
        ("mlp", MNIST, 407_050, 10),
        ("cnn_small", MNIST, 61_482, 10),
        ("convnet4", CATDOG, 5_681_345, 1),  # two classes: one logit
    ],
)
def test_lecture_parameter_counts_and_outputs(model, spec, total, logits):
    net = build_model(model, spec)
    assert count_parameters(net) == (total, total)
    assert net(torch.zeros(2, *spec.input_shape)).shape == (2, logits)


def test_cnn_small_adapts_to_the_input_and_the_summary_matches_keras():
    rows = summary_rows(build_model("cnn_small", MNIST), MNIST)
    assert [shape for name, shape, _ in rows if "ReLU" not in name] == [
        *("(None, 26, 26, 32)", "(None, 13, 13, 32)", "(None, 11, 11, 32)"),
        *("(None, 5, 5, 32)", "(None, 800)", "(None, 64)", "(None, 10)"),
    ]
    rgb = DataSpec(kind="image", input_shape=(3, 32, 32), classes=("cats", "dogs"))
    assert build_model("cnn_small", rgb)(torch.zeros(2, 3, 32, 32)).shape == (2, 1)
    net = build_model("mlp", MNIST, {"hidden": 16, "dropout": 0})  # an int for a float
    assert isinstance(net[3].p, float) and net[1].out_features == 16
    net[1].requires_grad_(False)
    text = summary_text(net, MNIST, "mnist_mlp")
    assert f"Total params: {784 * 16 + 16 + 170:,}" in text and "Trainable params: 170" in text
    assert text.rstrip("_\n").endswith(f"Non-trainable params: {784 * 16 + 16:,}")


def test_options_are_checked_without_importing_torch():
    code = (
        "import sys, nnlab.models.registry as r; r.check_options('vgg16', {'pool': 'max'}); "
        "r.check_options('lstm', {'packed': None, 'bidirectional': True}); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        ("mlp", {"hidden": "big"}, r"model_options\.hidden: 'big' .*integer"),
        ("mlp", {"dropout": 1.0}, r"model_options\.dropout: 1\.0 .*less than 1"),
        ("vgg16", {"pool": "mean"}, r"model_options\.pool: 'mean' .*'avg', 'max' or 'flatten'"),
        ("gru", {"bidirectional": 1}, r"model_options\.bidirectional: 1 .*boolean"),
        ("mlp", {"hiden": 3}, r"model_options\.hiden: .*no such option \(options: hidden, drop"),
        ("resnet", {}, r"unknown model 'resnet' \(known: cnn_small, convnet4, gru, lstm, mlp"),
        ("mlp", {"hidden": "x" * 500}, r"^model_options\.hidden: .{0,120}$"),  # shortened
    ],
)
def test_bad_model_options_are_named(model, options, message):
    with pytest.raises(ValueError, match=message):
        check_options(model, options)
    with pytest.raises(ValueError, match=message):  # before anything is built
        build_model(model, MNIST, options)
