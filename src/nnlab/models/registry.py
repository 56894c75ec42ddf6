"""Model name -> nn.Module; a builder's keyword-only parameters are the ``model_options`` schema
(pydantic checks it without torch: builders import torch when they run)."""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import reprlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field

from nnlab.spec import DataSpec

if TYPE_CHECKING:
    from torch import nn

_LOADING = contextvars.ContextVar("nnlab_loading_checkpoint", default=False)


@contextlib.contextmanager
def loading_checkpoint() -> Iterator[None]:
    """Inside, builders fetch no pretrained weights: a checkpoint will overwrite them."""
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)


Dropout = Annotated[float, Field(ge=0, lt=1)]
Positive = Annotated[int, Field(ge=1)]


def keras_init(net: nn.Module) -> nn.Module:
    """Keras' default initializers, as the lecture's models started: Glorot-uniform kernels and
    zero biases; for LSTM/GRU orthogonal recurrent kernels and (LSTM) a forget-gate bias of 1;
    embeddings uniform in ±0.05. (PyTorch's defaults shrink the signal of a deep ReLU stack,
    so the lecture's convnet4 sat at chance for epochs.)"""
    from torch import nn

    for m in net.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.05, 0.05)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx] = 0
        elif isinstance(m, nn.LSTM | nn.GRU):
            gates = 4 if isinstance(m, nn.LSTM) else 3
            for name, w in m.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(w)  # (4h or 3h, inputs): Keras' kernel transposed
                elif name.startswith("weight_hh"):
                    for gate in w.data.chunk(gates):
                        nn.init.orthogonal_(gate)
                else:
                    nn.init.zeros_(w)
                    if gates == 4 and name.startswith("bias_ih"):
                        w.data[m.hidden_size : 2 * m.hidden_size] = 1.0  # i, f, g, o
    return net


def _conv_net(
    spec: DataSpec, filters: tuple[int, ...], padding: int, dense: tuple[int, ...], dropout=None
) -> nn.Module:
    """3x3 conv + ReLU + max-pool blocks, Flatten, [Dropout], Dense + ReLU layers, Dense."""
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    for cin, cout in zip((spec.input_shape[0], *filters), filters, strict=False):
        layers += [nn.Conv2d(cin, cout, 3, padding=padding), nn.ReLU(), nn.MaxPool2d(2)]
    layers.append(nn.Flatten())
    width = nn.Sequential(*layers)(torch.zeros(1, *spec.input_shape)).shape[1]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    for units in dense:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    return keras_init(nn.Sequential(*layers, nn.Linear(width, spec.num_outputs)))


def mlp(spec: DataSpec, *, hidden: Positive = 512, dropout: Dropout = 0.0) -> nn.Module:
    """The lecture's MLP: Flatten -> Dense(hidden) ReLU -> Dropout -> Dense."""
    from torch import nn

    return keras_init(
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(spec.input_shape), hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, spec.num_outputs),
        )
    )


def cnn_small(spec: DataSpec, *, filters: Positive = 32, dense: Positive = 64) -> nn.Module:
    """The lecture's MNIST CNN: two 3x3 'valid' conv + max-pool blocks, Dense, Dense."""
    return _conv_net(spec, (filters, filters), 0, (dense,))


def convnet4(spec: DataSpec, *, dropout: Dropout = 0.5) -> nn.Module:
    """The lecture's cats-vs-dogs CNN: four 3x3 'same' conv + max-pool blocks (32, 64, 128, 128
    filters), Flatten, Dropout, Dense 512, Dense 256, Dense."""
    return _conv_net(spec, (32, 64, 128, 128), 1, (512, 256), dropout)


def vgg16(
    spec: DataSpec,
    *,
    backbone: Literal["vgg16", "efficientnet_lite0"] = "vgg16",
    weights: str = "imagenet",
    source: Literal["auto", "remote", "bundled"] = "auto",
    pool: Literal["avg", "max", "flatten"] = "avg",
    hidden: Positive = 256,
    dropout: Dropout = 0.5,
    trainable_blocks: Annotated[int, Field(ge=0, le=5)] = 0,
    timeout: Annotated[float, Field(gt=0)] = 10.0,
) -> nn.Module:
    """An ImageNet-pretrained base (:mod:`nnlab.models.backbones`), frozen but for its last
    ``trainable_blocks``, under a new head."""
    options = dict(locals())  # spec and the options
    from nnlab.models.backbones import TransferNet

    if _LOADING.get():
        options["weights"] = "none"  # nothing is fetched: the checkpoint holds the weights
    return TransferNet(**options)


def recurrent(
    cell: Literal["lstm", "gru"],
    spec: DataSpec,
    *,
    embed_dim: Positive = 64,
    hidden: Positive = 64,
    num_layers: Positive = 1,
    bidirectional: bool = False,
    dropout: Dropout = 0.0,
    packed: bool | None = None,
) -> nn.Module:
    """Embedding -> LSTM or GRU -> last real token's state -> Dense."""
    options = dict(locals())  # cell, spec and the options
    from nnlab.models.rnn import RecurrentClassifier

    return keras_init(RecurrentClassifier(**options))


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn_small": cnn_small,
    "convnet4": convnet4,
    "vgg16": vgg16,
    "lstm": partial(recurrent, "lstm"),
    "gru": partial(recurrent, "gru"),
}


def check_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options, checked against a strict pydantic model of the builder's keyword-only
    parameters: ValueError names the model, or ``model_options.<key>`` and its value (unknown
    name or option, wrong type, out of range)."""
    if model not in BUILDERS:
        raise ValueError(f"unknown model {model!r} (known: {', '.join(sorted(BUILDERS))})")
    fields = {
        name: (p.annotation, p.default)
        for name, p in inspect.signature(BUILDERS[model]).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    config = ConfigDict(strict=True, extra="forbid")
    schema = pydantic.create_model(f"{model}_options", __config__=config, **fields)
    try:
        checked = schema.model_validate(options)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "extra_forbidden":
            why = f"model {model!r} has no such option (options: {', '.join(schema.model_fields)})"
        else:
            msg = first["msg"][0].lower() + first["msg"][1:]
            why = f"{reprlib.repr(first['input'])} is not valid for {model!r} ({msg})"
        raise ValueError(f"model_options.{first['loc'][0]}: {why}") from None
    return checked.model_dump(include=set(options))


def build_model(name: str, spec: DataSpec, options: dict[str, Any] | None = None) -> nn.Module:
    checked = check_options(name, dict(options or {}))  # before the lookup: unknown names
    return BUILDERS[name](spec, **checked)
