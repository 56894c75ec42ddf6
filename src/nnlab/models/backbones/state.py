"""Weight files of the pretrained bases: tensors only, errors that name the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nnlab.files import load_checkpoint


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file, bare or ``{"state_dict": ...}`` (tensors only: load_checkpoint)."""
    path = Path(path).expanduser()
    if not path.exists():  # a FIFO or a device: refused by load_checkpoint, naming it
        raise FileNotFoundError(f"model_options.weights: {path} does not exist")
    state = load_checkpoint(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(
            f"model_options.weights: {path} holds a {type(state).__name__}, not a state dict"
        )
    return state


def load_renamed(module: nn.Module, path: str | Path, drop: str, rename: Callable) -> None:
    """The state dict file's tensors into ``module``, keys renamed, those starting with ``drop``
    left out; a ValueError names the file and the first key or shape that does not fit."""
    state = {rename(k): v for k, v in read_state(path).items() if not k.startswith(drop)}
    try:
        module.load_state_dict(state)
    except RuntimeError as err:  # missing/unexpected keys, wrong shapes
        first = str(err).splitlines()[1:2] or [str(err)]
        raise ValueError(
            f"model_options.weights: {path}: weights do not fit the architecture "
            f"({first[0].strip()[:200]})"
        ) from None
