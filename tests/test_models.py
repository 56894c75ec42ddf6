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
TEXT = DataSpec(kind="text", input_shape=(20,), classes=("neg", "pos"), vocab_size=50)


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


def test_the_lecture_nets_start_as_keras_did():
    """Glorot-uniform kernels, zero biases, LSTM forget-gate bias 1, orthogonal recurrence,
    embeddings in ±0.05 with a zero padding row: a convnet4 output that is not ~0 at step 0."""
    torch.manual_seed(0)
    net = build_model("convnet4", CATDOG, {})
    conv = net[0]
    fan_in, fan_out = 3 * 9, 32 * 9
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert all(m.bias.abs().sum() == 0 for m in net if hasattr(m, "bias"))
    assert net(torch.rand(8, 3, 150, 150)).std() > 0.02  # PyTorch's defaults: about 0.004
    lstm = build_model("lstm", TEXT, {"embed_dim": 8, "hidden": 4})
    h = lstm.rnn.hidden_size
    assert lstm.rnn.bias_ih_l0[h : 2 * h].tolist() == [1.0] * h  # i, f, g, o
    assert lstm.rnn.bias_ih_l0[:h].abs().sum() == lstm.rnn.bias_hh_l0.abs().sum() == 0
    gate = lstm.rnn.weight_hh_l0[:h]
    torch.testing.assert_close(gate @ gate.T, torch.eye(h), atol=1e-5, rtol=0)
    emb = lstm.embedding
    assert emb.weight[emb.padding_idx].abs().sum() == 0 and emb.weight.abs().max() <= 0.05
