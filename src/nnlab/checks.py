"""What only the libraries can judge in params.yaml (model options, augment steps, ``trainer:``),
asked of the model registry, albumentations and Lightning before a stage touches a file."""

from __future__ import annotations

import inspect
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
    """ConfigError, one line naming the key and the value, unless the model, every augment step
    and a Trainer from ``trainer:`` can be built."""
    check_model(params, name)
    for i, step in enumerate(params.experiment(name).augment):
        try:
            build_augment([step], params.seed, rank=0)
        except Exception as err:
            _fail(f"experiments.{name}.augment[{i}]: {one_line(err).removeprefix('augment[0] ')}")
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
    """ConfigError unless Lightning accepts ``trainer:``: keys by ``lightning.Trainer``'s signature,
    types by its annotations, values by building one (pinned on the key whose removal helps)."""
    signature = inspect.signature(L.Trainer.__init__).parameters
    types = get_type_hints(L.Trainer.__init__)
    kwargs = trainer.kwargs()
    for key, value in kwargs.items():
        if key not in signature:
            _fail(f"trainer.{key}: unknown key: not an argument of lightning.Trainer")
        try:
            TypeAdapter(types.get(key, Any), config=_STRICT).validate_python(value)
        except ValidationError as err:
            expected = "; ".join(dict.fromkeys(e["msg"] for e in err.errors()))
            _fail(f"trainer.{key}: {expected} (got {show(value)})")
    reason = _refusal(kwargs)
    if reason is None:
        return
    written = trainer.model_dump(exclude_unset=True)
    for key, value in written.items():
        others = {k: v for k, v in written.items() if k != key}
        if _refusal({**TrainerConfig().kwargs(), **others}) is None:
            _fail(f"trainer.{key}: Lightning rejects {show(value)}: {reason}")
    _fail(f"trainer: Lightning rejects it: {reason}")


def _refusal(kwargs: dict[str, Any]) -> str | None:
    """Why Lightning will not build a Trainer from ``kwargs``, or None (a quiet dry build)."""
    logging.disable(logging.WARNING)  # Lightning's notes on the dry build
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(**kwargs, logger=False, enable_checkpointing=False, max_epochs=1)
    except Exception as err:
        return one_line(err) or type(err).__name__
    finally:
        logging.disable(logging.NOTSET)
    return None


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"{PARAMS_FILE}: {message}") from None
