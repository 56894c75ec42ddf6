import pytest
import torch

from nnlab.classifier import count_parameters
from nnlab.models.registry import DataSpec, build_model, names
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


def test_registry_lists_models():
    assert {"mlp", "cnn_small"} <= set(names())
