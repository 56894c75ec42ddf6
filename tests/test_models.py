import subprocess
import sys

import pytest
import torch

from nnlab.classifier import count_parameters
from nnlab.models.registry import (
    BUILDERS,
    DataSpec,
    NetHooks,
    SplitNet,
    TunableNet,
    build_model,
    check_options,
)
from nnlab.summary import summary_rows, summary_text

MNIST = DataSpec(kind="image", input_shape=(1, 28, 28), classes=tuple("0123456789"))


@pytest.mark.parametrize(("model", "total"), [("mlp", 407_050), ("cnn_small", 61_482)])
def test_lecture_parameter_counts(model, total):
    net = build_model(model, MNIST)
    assert count_parameters(net) == (total, total)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_cnn_small_output_shapes_match_keras_lecture():
    rows = summary_rows(build_model("cnn_small", MNIST), MNIST)
    shapes = [shape for name, shape, _ in rows if "ReLU" not in name]
    assert shapes == [
        "(None, 26, 26, 32)", "(None, 13, 13, 32)", "(None, 11, 11, 32)", "(None, 5, 5, 32)",
        "(None, 800)", "(None, 64)", "(None, 10)",
    ]


def test_summary_totals_with_separators():
    text = summary_text(build_model("mlp", MNIST), MNIST, "mnist_mlp")
    assert "Total params: 407,050" in text
    assert "Trainable params: 407,050" in text
    assert text.rstrip("_\n").endswith("Non-trainable params: 0")


def test_frozen_parameters_are_non_trainable():
    net = build_model("mlp", MNIST)
    for p in net[1].parameters():
        p.requires_grad_(False)
    text = summary_text(net, MNIST)
    assert "Non-trainable params: 401,920" in text


def test_two_classes_give_one_logit():
    spec = DataSpec(kind="image", input_shape=(3, 32, 32), classes=("cats", "dogs"))
    assert build_model("cnn_small", spec)(torch.zeros(2, 3, 32, 32)).shape == (2, 1)


def test_convnet4_parameter_count_at_150px():
    spec = DataSpec(kind="image", input_shape=(3, 150, 150), classes=("cats", "dogs"))
    net = build_model("convnet4", spec)
    assert count_parameters(net) == (5_681_345, 5_681_345)
    assert net(torch.zeros(2, 3, 150, 150)).shape == (2, 1)


def test_registry_names_every_model():
    assert set(BUILDERS) == {"mlp", "cnn_small", "convnet4", "vgg16", "lstm", "gru"}


def test_registry_imports_no_torch():
    code = "import sys, nnlab.models.registry as r; r.check_options('vgg16', {'pool': 'max'}); " \
           "assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("model", "options", "message"), [
    ("mlp", {"hidden": "big"}, r"model_options\.hidden: 'big' .*integer"),
    ("mlp", {"hidden": True}, r"model_options\.hidden: True .*integer"),
    ("mlp", {"hidden": 0}, r"model_options\.hidden: 0 .*greater than or equal to 1"),
    ("mlp", {"dropout": "0.5"}, r"model_options\.dropout: '0\.5' .*number"),
    ("mlp", {"dropout": 1.0}, r"model_options\.dropout: 1\.0 .*less than 1"),
    ("cnn_small", {"filters": 3.5}, r"model_options\.filters: 3\.5"),
    ("vgg16", {"pool": "mean"}, r"model_options\.pool: 'mean' .*'avg', 'max' or 'flatten'"),
    ("vgg16", {"source": "sometimes"}, r"model_options\.source: 'sometimes'"),
    ("vgg16", {"backbone": "resnet"}, r"model_options\.backbone: 'resnet'"),
    ("vgg16", {"trainable_blocks": 6}, r"model_options\.trainable_blocks: 6"),
    ("lstm", {"packed": "yes"}, r"model_options\.packed: 'yes' .*boolean"),
    ("gru", {"bidirectional": 1}, r"model_options\.bidirectional: 1 .*boolean"),
    ("mlp", {"hiden": 3}, r"model_options\.hiden: .*no such option \(options: hidden, dropout\)"),
    ("resnet", {}, r"unknown model 'resnet' \(known: cnn_small, convnet4, gru, lstm, mlp"),
])
def test_bad_model_options_are_named(model, options, message):
    with pytest.raises(ValueError, match=message):
        check_options(model, options)


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ValueError) as err:
        check_options("mlp", {"hidden": "x" * 500})
    assert len(str(err.value)) < 150


def test_good_options_pass_and_ints_are_floats():
    check_options("mlp", {"hidden": 16, "dropout": 0})
    check_options("vgg16", {"timeout": 5, "pool": "flatten", "weights": "none"})
    check_options("lstm", {"packed": None, "bidirectional": True})
    net = build_model("mlp", MNIST, {"dropout": 0})
    assert isinstance(net[3].p, float)


def test_plain_nets_offer_no_hooks():
    net = build_model("mlp", MNIST)
    assert not isinstance(net, (SplitNet, TunableNet, NetHooks))
