"""Looking inside conv nets: Grad-CAM, feature maps, filter patterns; skipped without convs."""

from __future__ import annotations

from collections import OrderedDict

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

from nnlab import viz
from nnlab.models.registry import build_model
from nnlab.spec import DataSpec

CATDOG = DataSpec("image", (3, 32, 32), ("cats", "dogs"))


def planted_net() -> nn.Module:
    """Frozen, VGG-style (in-place ReLU): channel 0 fires on red, the logit is its mean."""
    conv = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 2.0  # red minus green minus blue, centre tap
        conv.weight[0, 1, 1, 1] = -1.0
        conv.weight[0, 2, 1, 1] = -1.0
        conv.bias.copy_(torch.tensor([-0.5, 0.0]))
        conv.weight[1] = 0.1  # a second, uninformative channel
    head = nn.Linear(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[5.0, 0.0]]))
        head.bias.fill_(-0.1)
    net = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return net.requires_grad_(False).eval()


def transfer_style_net(classes: int = 1) -> nn.Module:
    """A tiny stand-in for a TransferNet: ``.base`` = normalize, block1..block5, pool."""

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=nn.Identity())
            channels = 3
            for i, width in enumerate((4, 6, 8, 8, 10), 1):
                layers[f"block{i}"] = nn.Sequential(
                    nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                    nn.MaxPool2d(2))
                channels = width
            layers["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.base = nn.Sequential(layers)
            self.head = nn.Sequential(nn.Linear(channels, 8), nn.ReLU(), nn.Dropout(0.5),
                                      nn.Linear(8, classes))

        def forward(self, x):
            return self.head(self.base(x))

    torch.manual_seed(0)
    net = Tiny()
    for m in net.modules():  # He init: signals (and gradients) reach block5 at full strength
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net


def images(n=4, size=32, channels=3, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def read_png(path):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01
    return img


# ----------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize(("row", "col"), [(6, 30), (36, 8)])
def test_grad_cam_peaks_at_the_planted_feature(row, col):
    x = torch.full((1, 3, 48, 48), 0.3)
    x[0, :, row:row + 6, col:col + 6] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    net = planted_net()
    cam, pred, prob = viz.grad_cam(net, x)
    assert cam.shape == (1, 48, 48) and pred.tolist() == [1]
    assert prob[0] == pytest.approx(torch.sigmoid(net(x))[0, 0].item(), abs=1e-6)
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    r, c = np.unravel_index(cam[0].argmax(), cam[0].shape)
    assert row <= r < row + 6 and col <= c < col + 6
    inside = cam[0, row:row + 6, col:col + 6].mean()
    assert inside > 5 * (cam[0].sum() - cam[0, row:row + 6, col:col + 6].sum()) / (48 * 48 - 36)


def test_grad_cam_of_the_other_class_is_its_evidence():
    # a red-free image: the net predicts class 0 with probability 1 - sigmoid(logit)
    x = torch.full((2, 3, 20, 24), 0.2)
    cam, pred, prob = viz.grad_cam(planted_net(), x)
    assert pred.tolist() == [0, 0] and cam.shape == (2, 20, 24)
    assert np.isfinite(cam).all()
    assert prob == pytest.approx(1 - torch.sigmoid(planted_net()(x))[:, 0].numpy(), abs=1e-6)
    assert (prob > 0.5).all()


def test_grad_cam_probability_is_the_softmax_of_the_predicted_class():
    net = transfer_style_net(classes=3).eval()
    x = images(3)
    _, pred, prob = viz.grad_cam(net, x)
    with torch.no_grad():
        soft = net(x).softmax(-1)
    assert pred.tolist() == soft.argmax(-1).tolist()
    assert prob == pytest.approx(soft.max(-1).values.numpy(), abs=1e-6)


def test_gradcam_figure_has_a_colour_bar_and_the_probability_in_the_title(tmp_path,
                                                                          monkeypatch):
    seen = {}
    save = viz._save

    def spy(fig, path):
        seen["axes"] = [ax.get_label() for ax in fig.axes]
        seen["texts"] = [ax.get_title() for ax in fig.axes] + [ax.get_xlabel() for ax in fig.axes]
        seen["colours"] = [ax.title.get_color() for ax in fig.axes[:3]]  # the top row
        save(fig, path)

    monkeypatch.setattr(viz, "_save", spy)
    x = images(3).numpy()
    cams = np.random.default_rng(0).random((3, 32, 32))
    titles = [f"cats: predicted dogs\np={p:.2f}" for p in (0.61, 0.72, 0.93)]
    viz.gradcam_figure(x, cams, titles, tmp_path / "gradcam.png", wrong=[True, False, False])
    assert seen["colours"] == ["red", "black", "black"]  # the photos' titles; misclassified red
    assert len(seen["axes"]) == 2 * 3 + 1 and "<colorbar>" in seen["axes"]
    assert viz.GRADCAM_LABEL in seen["texts"] and "cats: predicted dogs\np=0.93" in seen["texts"]
    img = read_png(tmp_path / "gradcam.png")
    assert img.shape[1] > img.shape[0] * 0.8  # room for the three columns


# ----------------------------------------------------------------------------- filter patterns


def test_ascent_raises_each_filters_mean_activation_and_leaves_the_net_alone():
    net = transfer_style_net()
    net.train()
    net.head.requires_grad_(False)  # a mix of frozen and trainable parameters
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    modes = [m.training for m in net.modules()]
    written = {}
    for name, conv in viz.pattern_layers(net):
        with viz._inspecting(net):
            start = viz.ascend_filters(net, conv, filters=4, steps=0, size=32)
            found = viz.ascend_filters(net, conv, filters=4, steps=30, size=32)
            gain = [viz._channel_means(viz._output_of(net, conv, img)[0], 4) for img in (start,
                                                                                      found)]
        assert found.shape == (4, 3, 32, 32) and found.min() >= 0 and found.max() <= 1
        assert (gain[1] > gain[0]).all(), name
        written[name] = found
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert [m.training for m in net.modules()] == modes


def test_the_pattern_of_a_red_detector_is_red():
    net = planted_net()
    with viz._inspecting(net):
        img = viz.ascend_filters(net, net[0], filters=2, steps=30, size=16)
    red, green, blue = img[0, :, 4:12, 4:12].mean(dim=(1, 2)).tolist()
    assert red > 0.95 and green < 0.05 and blue < 0.05
    assert (img[1, :, 4:12, 4:12] > 0.95).all()  # the all-positive filter: white


def test_filter_patterns_are_deterministic_and_one_png_per_layer(tmp_path):
    net = transfer_style_net().eval()
    layers = viz.pattern_layers(net)
    assert [name for name, _ in layers] == ["block1_conv2", "block3_conv2", "block5_conv2"]
    assert layers[-1][1] is net.base.block5[4]  # the ReLU after conv2 and its BatchNorm
    runs = []
    for out in (tmp_path / "a", tmp_path / "b"):
        out.mkdir()
        written = viz.filter_patterns(net, layers, out, filters=3, steps=4, size=32, seed=5)
        assert [p.name for p in written] == [f"filter_patterns_{n}.png" for n, _ in layers]
        assert sorted(out.iterdir()) == sorted(written)
        runs.append([read_png(p) for p in written])
    assert all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))
    with viz._inspecting(net):
        same = [viz.ascend_filters(net, layers[1][1], filters=3, steps=4, size=32, seed=s)
                for s in (5, 5, 6)]
    assert torch.equal(same[0], same[1]) and not torch.equal(same[0], same[2])


def test_pattern_layers_of_plain_nets_count_their_convs():
    net = build_model("convnet4", DataSpec("image", (3, 64, 64), ("cats", "dogs")))
    layers = viz.pattern_layers(net, n=3)
    assert [name for name, _ in layers] == ["conv1", "conv3", "conv4"]
    assert [m for _, m in layers] == [net[1], net[7], net[10]]  # the convs' ReLUs
    assert [name for name, _ in viz.pattern_layers(net, n=1)] == ["conv1"]
    assert viz.pattern_layers(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) == []


def test_pattern_layers_of_vgg16_are_the_lectures():
    vgg = build_model("vgg16", CATDOG, {"weights": "none"})  # random init: no download
    assert [n for n, _ in viz.pattern_layers(vgg)] == ["block1_conv2", "block3_conv3",
                                                       "block5_conv3"]
    assert [n for n, _ in viz.pattern_layers(vgg, n=5)] == [f"block{i}_conv{c}" for i, c in
                                                            enumerate((2, 2, 3, 3, 3), 1)]


def test_filters_are_capped_at_the_layers_channels():
    net = planted_net()
    with viz._inspecting(net):
        assert viz.ascend_filters(net, net[0], filters=8, steps=2, size=8).shape == (2, 3, 8, 8)
        with pytest.raises(ValueError, match="Linear gives"):
            viz.ascend_filters(net, net[4], filters=1, steps=1, size=8)


# ----------------------------------------------------------------------------- model_pictures

FOUR_SHAPES = ["convnet4", "cnn_small", "transfer", "composed"]


def four_shapes(kind):
    if kind == "cnn_small":
        spec = DataSpec("image", (1, 28, 28), tuple("0123456789"))
        return build_model("cnn_small", spec), images(4, 28, channels=1), spec
    spec = CATDOG
    if kind == "convnet4":
        return build_model("convnet4", spec), images(4), spec
    # the registry's TransferNet with the EfficientNet-Lite0 base at random init (no download)
    net = build_model("vgg16", spec, {"backbone": "efficientnet_lite0", "weights": "none"})
    return (net if kind == "transfer" else nn.Sequential(net.base, net.head)), images(4), spec


@pytest.mark.parametrize("kind", FOUR_SHAPES)
def test_model_pictures_for_the_four_net_shapes(tmp_path, kind):
    net, x, spec = four_shapes(kind)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    y = np.arange(len(x)) % spec.num_classes
    written = viz.model_pictures(net, x, y, list(spec.classes), tmp_path, filters=2, steps=2)
    layers = 2 if kind == "cnn_small" else 3
    assert [p.name for p in written][:2] == ["feature_maps.png", "first_conv_weights.png"]
    assert [p.name for p in written][-1] == "gradcam.png"
    assert sum(p.name.startswith("filter_patterns_") for p in written) == layers
    assert sorted(tmp_path.iterdir()) == sorted(written)
    for path in written:
        read_png(path)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_model_pictures_without_filter_patterns(tmp_path):
    net, x, spec = four_shapes("convnet4")
    written = viz.model_pictures(net, x, [0, 1, 0, 1], list(spec.classes), tmp_path, filters=0)
    assert [p.name for p in written] == ["feature_maps.png", "first_conv_weights.png",
                                         "gradcam.png"]


def test_model_pictures_skip_nets_without_convs_and_non_images(tmp_path):
    mlp = build_model("mlp", CATDOG)
    assert viz.model_pictures(mlp, images(2), [0, 1], ["cats", "dogs"], tmp_path) == []
    tokens = torch.zeros(2, 50, dtype=torch.long)
    assert viz.model_pictures(planted_net(), tokens, [0, 1], ["neg", "pos"], tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_example_indices_spread_over_the_classes():
    y = np.array([0, 0, 0, 0, 1, 2, 2, 2])
    assert viz.example_indices(y, 4) == [0, 1, 4, 5]
    assert viz.example_indices(y, 20) == list(range(8))
    assert viz.example_indices(np.array([], dtype=int), 3) == []


def test_layer_outputs_of_a_grayscale_net():
    net = build_model("cnn_small", DataSpec("image", (1, 28, 28), tuple("0123456789")))
    maps = viz.layer_outputs(net, torch.zeros(1, 1, 28, 28), [net[0], net[3]])
    assert [tuple(m.shape) for m in maps] == [(1, 32, 26, 26), (1, 32, 11, 11)]
