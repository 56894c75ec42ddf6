"""Fully connected network of the lecture: Flatten -> Dense(hidden) ReLU -> Dense(classes)."""

from __future__ import annotations

import math

from torch import nn

from nnlab.spec import DataSpec


def mlp(spec: DataSpec, *, hidden: int, dropout: float) -> nn.Module:
    in_features = math.prod(spec.input_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, spec.num_outputs),
    )
