"""Convolutional networks trained from scratch."""

from __future__ import annotations

import torch
from torch import nn

from nnlab.models.registry import DataSpec, register


def _flat_features(body: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return body(torch.zeros(1, *input_shape)).flatten(1).shape[1]


@register("cnn_small")
def cnn_small(spec: DataSpec, filters: int = 32, dense: int = 64) -> nn.Module:
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
