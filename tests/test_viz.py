"""Pictures: the plots evaluate writes, and what conv nets see (skipped without convs)."""

import copy
from collections import OrderedDict

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from nnlab import viz
from nnlab.models.registry import build_model
from nnlab.spec import DataSpec
from nnlab.viz import inside

CATDOG = DataSpec("image", (3, 32, 32), ("cats", "dogs"))
DIGITS = DataSpec("image", (1, 28, 28), tuple("0123456789"))
LITE0 = {"backbone": "efficientnet_lite0", "weights": "none"}  # random init: no download


def planted_net() -> nn.Module:
    """Frozen, VGG-style (in-place ReLU): channel 0 fires on red, the logit is its mean."""
    conv, head = nn.Conv2d(3, 2, 3, padding=1), nn.Linear(2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, :, 1, 1] = torch.tensor([2.0, -1.0, -1.0])  # red minus green and blue
        conv.weight[1] = 0.1  # a second, uninformative channel
        conv.bias.copy_(torch.tensor([-0.5, 0.0]))
        head.weight.copy_(torch.tensor([[5.0, 0.0]]))
        head.bias.fill_(-0.1)
    net = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return net.requires_grad_(False).eval()


def tiny(classes: int = 1) -> nn.Module:
    """A TransferNet's shape: ``base`` = block1..block5 (He init) and a pool; a head."""
    torch.manual_seed(0)
    base = OrderedDict()
    for i, (cin, w) in enumerate([(3, 4), (4, 6), (6, 8), (8, 8), (8, 10)], 1):
        first, second = nn.Conv2d(cin, w, 3, padding=1), nn.Conv2d(w, w, 3, padding=1)
        base[f"block{i}"] = nn.Sequential(
            first, nn.ReLU(inplace=True), second, nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)
        )
    base["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, classes))
    net = nn.Sequential(OrderedDict(base=nn.Sequential(base), head=head))
    for conv in inside.conv_names(net):
        nn.init.kaiming_normal_(net.get_submodule(conv).weight, nonlinearity="relu")
    return net


def png_shape(path):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01
    return img.shape


def test_the_plots_evaluate_writes_and_its_examples(tmp_path):
    (tmp_path / "history.csv").write_text(
        "epoch,train/loss,train/acc,val/loss,val/acc\n"
        "0,0.9,0.5,1.0,0.4\n1,0.5,0.8,0.7,0.6\n2,0.4,0.9,,\n"
    )
    viz.learning_curves(tmp_path / "history.csv", tmp_path / "curves.png", "exp")
    metric = MulticlassConfusionMatrix(3)
    metric.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1]))
    viz.confusion_matrix(metric, ["cats", "dogs", "birds"], tmp_path / "confusion.png", "exp")
    x = np.random.default_rng(0).integers(0, 256, (30, 28, 28, 1), dtype=np.uint8)
    viz.augmented_samples(x, lambda img: 255 - img, tmp_path / "augmented.png", rows=3)
    y, probs = np.arange(30) % 2, np.tile([0.2, 0.8], (30, 1))
    viz.misclassified(x, y, probs, ["cats", "dogs"], tmp_path / "wrong.png")
    viz.misclassified(x, y, np.eye(2)[y], ["cats", "dogs"], tmp_path / "none.png")  # all right
    shapes = {p.name: png_shape(p) for p in tmp_path.glob("*.png")}
    assert sorted(shapes) == ["augmented.png", "confusion.png", "curves.png", "wrong.png"]
    assert all(shapes[n][1] > 2.2 * shapes[n][0] for n in ("augmented.png", "wrong.png"))  # 8/row
    y = np.array([0, 0, 0, 0, 1, 2, 2, 2])  # examples: as evenly spread over the classes
    assert viz.example_indices(y, 4) == [0, 1, 4, 5]
    assert viz.example_indices(y, 20) == list(range(8))
    assert viz.example_indices(np.array([], dtype=int), 3) == []


@pytest.mark.parametrize(("row", "col"), [(6, 30), (36, 8)])
def test_grad_cam_peaks_at_the_planted_feature(row, col):
    x = torch.full((1, 3, 48, 48), 0.3)
    x[0, :, row : row + 6, col : col + 6] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    cam, pred, _ = inside.grad_cam(planted_net(), x)
    assert pred.tolist() == [1] and cam.shape == (1, 48, 48) and cam.min() >= 0 and cam.max() == 1
    r, c = np.unravel_index(cam[0].argmax(), cam[0].shape)
    assert row <= r < row + 6 and col <= c < col + 6
    assert cam[0, row : row + 6, col : col + 6].mean() > 5 * cam[0].mean()


def test_grad_cam_probabilities_and_figure():
    x = torch.full((3, 3, 20, 24), 0.2)
    x[1, 0] = 1.0  # red: class 1 with probability sigmoid(logit), the others 1 - sigmoid
    cam, pred, prob = inside.grad_cam(planted_net(), x)
    assert pred.tolist() == [0, 1, 0] and cam.shape == (3, 20, 24) and np.isfinite(cam).all()
    sigmoid = torch.sigmoid(planted_net()(x))[:, 0].numpy()
    assert prob == pytest.approx(np.where(pred == 1, sigmoid, 1 - sigmoid), abs=1e-6)
    fig = inside.gradcam_figure(planted_net(), x, np.array([0, 1, 1]), ["cats", "dogs"])
    top = [ax.title for ax in fig.axes[:3]]  # the photos'; misclassified in red
    assert [t.get_color() for t in top] == ["black", "black", "red"]
    assert top[2].get_text() == f"dogs: predicted cats\np={prob[2]:.3f}"
    assert "<colorbar>" in [ax.get_label() for ax in fig.axes]
    net = tiny(classes=3).eval()
    x = torch.rand(3, 3, 32, 32)  # seeded by tiny()
    _, pred, prob = inside.grad_cam(net, x)
    soft = net(x).softmax(-1).detach()
    assert pred.tolist() == soft.argmax(-1).tolist() and prob == pytest.approx(soft.amax(-1))


def test_ascent_raises_each_filters_rectified_activation_and_leaves_the_net_alone():
    net = tiny()
    net.head.requires_grad_(False)  # a mix of frozen and trainable parameters, in train mode
    before, modes = copy.deepcopy(net.state_dict()), [m.training for m in net.modules()]
    for name, conv in inside.pattern_layers(net):
        start = inside.ascend_filters(net, conv, filters=4, steps=0, size=32)
        found = inside.ascend_filters(net, conv, filters=4, steps=30, size=32)
        with inside.evaluating(net):
            probe = inside.activations(net, [conv])
            gain = [inside.channel_means(probe(img)[0][1]) for img in (start, found)]
        assert found.shape == (4, 3, 32, 32) and found.min() >= 0 and found.max() <= 1
        assert (gain[1] > gain[0]).all(), name
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    assert [m.training for m in net.modules()] == modes
    pre, act = inside.activations(net.eval(), ["base.block5.2"])(torch.rand(2, 3, 32, 32))[0]
    assert pre.min() < 0 and torch.equal(act, pre.clamp_min(0))  # the ReLU after its BatchNorm
    img = inside.ascend_filters(planted_net(), "0", filters=8, steps=30, size=16)
    assert img.shape == (2, 3, 16, 16)  # capped at the layer's channels
    rgb = img[0, :, 4:12, 4:12].mean(dim=(1, 2))  # red, its ReLU woken up on the way
    assert torch.allclose(rgb, torch.tensor([1.0, 0.0, 0.0]), atol=0.2)
    assert (img[1, :, 4:12, 4:12] > 0.95).all()  # the all-positive filter: white


def test_pattern_layers_are_labelled_like_the_lectures_and_drawn_deterministically(tmp_path):
    def labels(net, n=3):
        return [label for label, _ in inside.pattern_layers(net, n)]

    assert labels(tiny()) == ["block1_conv2", "block3_conv2", "block5_conv2"]
    vgg = build_model("vgg16", CATDOG, {"weights": "none"})  # random init: no download
    assert labels(vgg) == ["block1_conv2", "block3_conv3", "block5_conv3"]
    convnet = build_model("convnet4", CATDOG)
    assert labels(convnet) == ["conv1", "conv3", "conv4"] and labels(convnet, 1) == ["conv1"]
    mlp = build_model("mlp", CATDOG)
    assert labels(mlp) == []
    assert inside.model_pictures(mlp, torch.rand(2, 3, 32, 32), [0, 1], "ab", tmp_path) == []
    tokens = torch.zeros(2, 50, dtype=torch.long)  # not images
    assert inside.model_pictures(planted_net(), tokens, [0, 1], ["a", "b"], tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    net, runs = tiny().eval(), []
    layers = inside.pattern_layers(net)
    for out in (tmp_path / "a", tmp_path / "b"):
        out.mkdir()
        written = inside.filter_patterns(net, layers, out, filters=3, steps=4, size=32, seed=5)
        assert written == [out / f"filter_patterns_{n}.png" for n, _ in layers]
        assert sorted(out.iterdir()) == sorted(written)
        runs.append([(png_shape(p), p.read_bytes()) for p in written])
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    ("make", "spec", "patterns"),
    [
        (lambda: build_model("convnet4", CATDOG), CATDOG, 0),  # with filters=0
        (lambda: build_model("cnn_small", DIGITS), DIGITS, 2),
        (lambda: build_model("vgg16", CATDOG, LITE0), CATDOG, 3),  # a TransferNet
        (lambda: nn.Sequential(*build_model("vgg16", CATDOG, LITE0).children()), CATDOG, 3),
    ],
    ids=["convnet4", "cnn_small", "transfer", "composed"],
)
def test_model_pictures_for_the_four_net_shapes(tmp_path, make, spec, patterns):
    net, x, y = make(), torch.rand(4, *spec.input_shape), np.arange(4) % 2
    before = copy.deepcopy(net.state_dict())
    written = inside.model_pictures(
        net, x, y, spec.classes, tmp_path, filters=patterns and 2, steps=2
    )
    names = [p.name for p in written if png_shape(p)]
    assert sorted(tmp_path.iterdir()) == sorted(written) and len(names) == 3 + patterns
    assert names[:2] + names[-1:] == ["feature_maps.png", "first_conv_weights.png", "gradcam.png"]
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
