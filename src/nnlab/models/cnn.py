"""Convolutional networks trained from scratch."""

from __future__ import annotations

import torch
from torch import nn

from nnlab.spec import DataSpec


def _flat_features(body: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return body(torch.zeros(1, *input_shape)).flatten(1).shape[1]


def cnn_small(spec: DataSpec, *, filters: int, dense: int) -> nn.Module:
    """The lecture's MNIST CNN: two 3x3 'valid' conv + max-pool blocks, Dense, Dense."""
    channels = spec.input_shape[0]
    body = nn.Sequential(
        nn.Conv2d(channels, filters, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return nn.Sequential(
        *body,
        nn.Linear(_flat_features(body, spec.input_shape), dense),
        nn.ReLU(),
        nn.Linear(dense, spec.num_outputs),
    )


def convnet4(spec: DataSpec, *, dropout: float) -> nn.Module:
    """The lecture's cats-vs-dogs CNN: four 3x3 'same' conv blocks (32, 64, 128, 128 filters,
    ReLU, max-pool 2), Flatten, Dropout, Dense 512, Dense 256, one logit per output.
    5,681,345 parameters at 150x150x3 with one logit."""
    layers: list[nn.Module] = []
    channels = spec.input_shape[0]
    for filters in (32, 64, 128, 128):
        layers += [nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels = filters
    body = nn.Sequential(*layers, nn.Flatten())
    return nn.Sequential(
        *body,
        nn.Dropout(dropout),
        nn.Linear(_flat_features(body, spec.input_shape), 512),
        nn.ReLU(),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Linear(256, spec.num_outputs),
    )
