"""Model registry: the only place that maps an experiment's ``model`` name to an nn.Module.

A builder takes a :class:`DataSpec` (what the split stage produced) and the experiment's
``model_options`` as keyword arguments, and returns a plain ``nn.Module`` that maps a batch to
logits: one per class, or a single logit for a two-class task.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from nnlab.spec import DataSpec

_LOADING = contextvars.ContextVar("nnlab_loading_checkpoint", default=False)


@contextlib.contextmanager
def loading_checkpoint() -> Iterator[None]:
    """Inside, builders skip fetching pretrained weights: a checkpoint will overwrite them."""
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)


def is_loading_checkpoint() -> bool:
    return _LOADING.get()


Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        _BUILDERS[name] = fn
        return fn

    return deco


def _load_all() -> None:
    # Importing the family modules fills the registry.
    from nnlab.models import cnn, mlp  # noqa: F401

    for optional in ("transfer", "rnn"):
        try:
            __import__(f"nnlab.models.{optional}")
        except ModuleNotFoundError as err:
            if err.name != f"nnlab.models.{optional}":
                raise


def names() -> list[str]:
    _load_all()
    return sorted(_BUILDERS)


def check_model(name: str, options: dict[str, Any]) -> None:
    """Raise ValueError naming the model or option when params cannot build it."""
    _load_all()
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(sorted(_BUILDERS))})")
    sig = inspect.signature(_BUILDERS[name])
    allowed = [p for p in sig.parameters if p != "spec"]
    for key in options:
        if key not in allowed:
            raise ValueError(
                f"model {name!r} has no option {key!r} (options: {', '.join(allowed) or 'none'})"
            )


def build_model(name: str, spec: DataSpec, options: dict[str, Any] | None = None) -> nn.Module:
    options = dict(options or {})
    check_model(name, options)
    return _BUILDERS[name](spec, **options)
