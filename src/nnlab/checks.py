"""What only the libraries judge in params.yaml (model options, augment steps, ``trainer:``)."""

from __future__ import annotations

import logging
import warnings
from typing import Any, NoReturn, get_type_hints

import lightning as L
from pydantic import ConfigDict, TypeAdapter, ValidationError

from nnlab.config import PARAMS_FILE, ConfigError, Params, TrainerConfig, show
from nnlab.data.augment import build_augment
from nnlab.log import one_line
from nnlab.models.registry import check_options

# Lightning's annotations, read strictly: "64" is not 64, true is not 1
_STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True, allow_inf_nan=False)


def check_experiment(params: Params, name: str) -> None:
    """ConfigError naming the key unless the model, the augment steps and a Trainer build."""
    check_model(params, name)
    try:
        build_augment(params.experiment(name).augment, params.seed, rank=0)
    except Exception as err:  # "augment[<i>] <step>..." -> "augment[<i>]: <step>..."
        _fail(f"experiments.{name}.{one_line(err).replace(' ', ': ', 1)}")
    check_trainer(params.trainer)


def check_model(params: Params, name: str) -> None:
    """ConfigError naming ``model`` or ``model_options.<key>`` unless the registry builds it."""
    exp = params.experiment(name)
    try:
        check_options(exp.model, exp.model_options)
    except ValueError as err:
        key = "" if str(err).startswith("model_options.") else "model: "
        _fail(f"experiments.{name}.{key}{err}")


def check_trainer(trainer: TrainerConfig) -> None:
    """ConfigError unless ``lightning.Trainer``'s annotations and a dry build take ``trainer:``."""
    types = get_type_hints(L.Trainer.__init__)
    kwargs = trainer.kwargs()
    for key, value in kwargs.items():
        try:
            TypeAdapter(types.get(key, Any), config=_STRICT).validate_python(value)
        except ValidationError as err:
            expected = "; ".join(dict.fromkeys(e["msg"] for e in err.errors()))
            _fail(f"trainer.{key}: {expected} (got {show(value)})")
    if (reason := _refusal(kwargs)) is not None:  # pinned on the written key whose removal helps
        own = trainer.model_dump(exclude_unset=True)
        for key, value in own.items():
            if not _refusal(TrainerConfig(**{k: v for k, v in own.items() if k != key}).kwargs()):
                _fail(f"trainer.{key}: Lightning rejects {show(value)}: {reason}")
        _fail(f"trainer: Lightning rejects it: {reason}")


def _refusal(kwargs: dict[str, Any]) -> str | None:
    """Why Lightning will not build a Trainer from ``kwargs``, or None (a quiet dry build)."""
    logging.disable(logging.WARNING)  # Lightning's notes on the dry build
    try:
        with warnings.catch_warnings(action="ignore"):
            L.Trainer(**kwargs, logger=False, enable_checkpointing=False, max_epochs=1)
    except Exception as err:
        return one_line(err) or type(err).__name__
    finally:
        logging.disable(logging.NOTSET)
    return None


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"{PARAMS_FILE}: {message}") from None
