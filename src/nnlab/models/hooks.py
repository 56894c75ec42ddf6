"""What a net may offer beyond ``forward`` (checkable with ``isinstance``), and the switch that
tells builders a checkpoint is being loaded. No torch at import.

Optional hooks a net may offer (:class:`NetHooks`, checkable with ``isinstance``):

``base`` and ``head`` (:class:`SplitNet`)
    sub-modules with ``net(x) == net.head(net.base(x))``; when ``base`` has no trainable
    parameters its outputs can be computed once and cached (``nnlab.features``).
``param_groups(lr, finetune) -> list[dict]`` (:class:`TunableNet`)
    the optimizer's parameter groups. Each group has ``params``, ``lr`` and a ``name``; a group
    that starts frozen also has ``unfreeze_epoch`` (from that epoch on its learning rate becomes
    ``unfrozen_lr``; before it is 0). ``finetune`` is the experiment's :class:`Finetune` block,
    or None when it has none.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

# ----------------------------------------------------------------------------- hooks


@runtime_checkable
class Finetune(Protocol):
    """The ``finetune`` block of an experiment, as :meth:`TunableNet.param_groups` reads it."""

    unfreeze_epoch: int  # the epoch from which the trainable part of a pretrained base learns
    backbone_lr: float | None  # its learning rate then; None: lr / 10


@runtime_checkable
class SplitNet(Protocol):
    """A net that is ``head(base(x))``."""

    base: nn.Module
    head: nn.Module


@runtime_checkable
class TunableNet(Protocol):
    """A net that chooses its own optimizer parameter groups."""

    def param_groups(self, lr: float, finetune: Finetune | None) -> list[dict[str, Any]]: ...


@runtime_checkable
class NetHooks(SplitNet, TunableNet, Protocol):
    """Both optional hooks (what a pretrained base under a new head offers)."""


# ----------------------------------------------------------------------------- loading

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


