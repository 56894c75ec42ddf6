"""Looking inside conv nets: Grad-CAM, feature maps, filters; skipped for nets without convs."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

from nnlab import viz
from nnlab.classifier import Classifier

CATDOG = {"dataset": "cats_vs_dogs", "kind": "image", "input_shape": [3, 32, 32],
          "classes": ["cats", "dogs"], "source": "test"}


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


@pytest.mark.parametrize(("row", "col"), [(6, 30), (36, 8)])
def test_grad_cam_peaks_at_the_planted_feature(row, col):
    x = torch.full((1, 3, 48, 48), 0.3)
    x[0, :, row:row + 6, col:col + 6] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    cam, pred = viz.grad_cam(planted_net(), x)
    assert cam.shape == (1, 48, 48) and pred.tolist() == [1]
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    r, c = np.unravel_index(cam[0].argmax(), cam[0].shape)
    assert row <= r < row + 6 and col <= c < col + 6
    inside = cam[0, row:row + 6, col:col + 6].mean()
    assert inside > 5 * (cam[0].sum() - cam[0, row:row + 6, col:col + 6].sum()) / (48 * 48 - 36)


def test_grad_cam_of_the_other_class_is_its_evidence():
    # a red-free image: the net predicts class 0; its Grad-CAM is not the red detector's
    cam, pred = viz.grad_cam(planted_net(), torch.full((2, 3, 20, 24), 0.2))
    assert pred.tolist() == [0, 0] and cam.shape == (2, 20, 24)
    assert np.isfinite(cam).all()


def _arrays(n=8, size=32):
    rng = np.random.default_rng(0)
    return {"x": rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
            "y": np.arange(n) % 2}


@pytest.mark.parametrize("model", ["convnet4", "cnn_small"])
def test_model_pictures_for_conv_nets(tmp_path, model):
    clf = Classifier(model=model, meta=CATDOG).eval()
    written = viz.model_pictures(clf, _arrays(), tmp_path, tmp_path)
    assert [p.name for p in written] == ["feature_maps.png", "filters.png", "gradcam.png"]
    for path in written:
        img = matplotlib.image.imread(path)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01


def test_model_pictures_skip_nets_without_convs(tmp_path):
    assert viz.model_pictures(Classifier(model="mlp", meta=CATDOG), _arrays(), tmp_path,
                              tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_filters_and_feature_maps_of_a_grayscale_net(tmp_path):
    meta = {**CATDOG, "input_shape": [1, 28, 28], "classes": list("0123456789")}
    clf = Classifier(model="cnn_small", meta=meta).eval()
    arrays = {"x": np.zeros((10, 28, 28, 1), np.uint8), "y": np.arange(10)}
    written = viz.model_pictures(clf, arrays, tmp_path, tmp_path)
    assert len(written) == 3 and all(p.stat().st_size > 0 for p in written)
    maps = viz.layer_outputs(clf.net, torch.zeros(1, 1, 28, 28), [clf.net[0], clf.net[3]])
    assert [tuple(m.shape) for m in maps] == [(1, 32, 26, 26), (1, 32, 11, 11)]
