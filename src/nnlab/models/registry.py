"""Model registry: the only place that maps an experiment's ``model`` name to an nn.Module.

``BUILDERS`` maps each name to a builder defined here. A builder takes the :class:`DataSpec`
of the prepared data and the experiment's ``model_options`` as keyword-only arguments, and
returns a plain ``nn.Module`` that maps a batch to logits: one per class, or a single logit
for a two-class task. The builder's signature is the schema of ``model_options``:
:func:`check_options` validates names and value types against it with pydantic (strict: ``"big"``
is not an int, ``true`` is not an int, ``"0.5"`` is not a float; an int is a float), so the
config loader rejects bad options without building anything. This module imports no torch: each
builder imports its family module when it runs.

Optional hooks a net may offer, and the checkpoint-loading switch, are in
:mod:`nnlab.models.hooks` (re-exported here).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field

from nnlab.models.hooks import (
    Finetune,
    NetHooks,
    SplitNet,
    TunableNet,
    is_loading_checkpoint,
    loading_checkpoint,
)
from nnlab.spec import DataSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["BUILDERS", "DataSpec", "Finetune", "NetHooks", "SplitNet", "TunableNet",
           "build_model", "check_options", "is_loading_checkpoint", "loading_checkpoint"]

# ----------------------------------------------------------------------------- builders

Dropout = Annotated[float, Field(ge=0, lt=1)]
Positive = Annotated[int, Field(ge=1)]


def mlp(spec: DataSpec, *, hidden: Positive = 512, dropout: Dropout = 0.0) -> nn.Module:
    """The lecture's MLP: Flatten -> Dense(hidden) ReLU -> Dropout -> Dense."""
    from nnlab.models.mlp import mlp as build

    return build(spec, hidden=hidden, dropout=dropout)


def cnn_small(spec: DataSpec, *, filters: Positive = 32, dense: Positive = 64) -> nn.Module:
    """The lecture's MNIST CNN: two conv + max-pool blocks, Dense, Dense."""
    from nnlab.models.cnn import cnn_small as build

    return build(spec, filters=filters, dense=dense)


def convnet4(spec: DataSpec, *, dropout: Dropout = 0.5) -> nn.Module:
    """The lecture's cats-vs-dogs CNN: four conv blocks, Dropout, Dense 512, Dense 256."""
    from nnlab.models.cnn import convnet4 as build

    return build(spec, dropout=dropout)


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
    """ImageNet-pretrained conv base (frozen except its last ``trainable_blocks``) + new head.

    ``weights``: ``imagenet`` (torchvision's, or under ``source: auto`` the packaged
    EfficientNet-Lite0 fallback), ``none`` (random init: tests, shapes) or the path of a local
    state dict file. ``source``: auto | remote | bundled, as for datasets.
    """
    from nnlab.models.transfer import transfer_net

    return transfer_net(spec, backbone=backbone, weights=weights, source=source, pool=pool,
                        hidden=hidden, dropout=dropout, trainable_blocks=trainable_blocks,
                        timeout=timeout)


def _recurrent(cell: Literal["lstm", "gru"]) -> Callable[..., nn.Module]:
    def build(
        spec: DataSpec,
        *,
        embed_dim: Positive = 64,
        hidden: Positive = 64,
        num_layers: Positive = 1,
        bidirectional: bool = False,
        dropout: Dropout = 0.0,
        packed: bool | None = None,
    ) -> nn.Module:
        from nnlab.models.rnn import RecurrentClassifier

        return RecurrentClassifier(cell, spec, embed_dim=embed_dim, hidden=hidden,
                                   num_layers=num_layers, bidirectional=bidirectional,
                                   dropout=dropout, packed=packed)

    build.__name__ = build.__qualname__ = cell
    build.__doc__ = (f"Embedding -> {cell.upper()} -> last real token's hidden state(s) -> "
                     f"Dense. ``packed``: None = only when bidirectional.")
    return build


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn_small": cnn_small,
    "convnet4": convnet4,
    "vgg16": vgg16,
    "lstm": _recurrent("lstm"),
    "gru": _recurrent("gru"),
}


# ----------------------------------------------------------------------------- options


@cache
def _schema(builder: Callable[..., Any]) -> type[pydantic.BaseModel]:
    """A strict pydantic model of the builder's keyword options (its annotations and defaults)."""
    fields = {
        name: (p.annotation, p.default)
        for name, p in inspect.signature(builder).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return pydantic.create_model(
        f"{builder.__name__}_options",
        __config__=ConfigDict(strict=True, extra="forbid"),
        __module__=builder.__module__,
        **fields,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _validated(model: str, options: dict[str, Any]) -> dict[str, Any]:
    if model not in BUILDERS:
        raise ValueError(f"unknown model {model!r} (known: {', '.join(sorted(BUILDERS))})")
    schema = _schema(BUILDERS[model])
    for key in options:
        if key not in schema.model_fields:
            allowed = ", ".join(schema.model_fields) or "none"
            raise ValueError(f"model_options.{key}: model {model!r} has no such option "
                             f"(options: {allowed})")
    try:
        checked = schema.model_validate(options)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"model_options.{key}: {_short(first['input'])} is not valid for "
                         f"{model!r} ({first['msg'][0].lower()}{first['msg'][1:]})") from None
    return {key: getattr(checked, key) for key in options}


def check_options(model: str, options: dict[str, Any]) -> None:
    """Raise ValueError naming the model, or ``model_options.<key>`` and its value, when params
    cannot build the model (unknown name, unknown option, wrong type, out of range)."""
    _validated(model, options)


def build_model(name: str, spec: DataSpec, options: dict[str, Any] | None = None) -> nn.Module:
    return BUILDERS[name](spec, **_validated(name, dict(options or {})))

