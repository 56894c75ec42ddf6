"""Typed view of params.yaml. The only module that reads it.

Every other module receives these objects. Validation happens on load: an unknown key,
a wrong type or an impossible value stops with one message naming the key and the value,
before any file is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DATASETS = ("mnist", "cats_vs_dogs", "imdb")
PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """params.yaml is missing, malformed or holds an invalid value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainerConfig(_Strict):
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: str = "32-true"
    deterministic: bool | Literal["warn"] = True
    log_every_n_steps: int = Field(10, ge=1)
    num_workers: int = Field(0, ge=0)
    persistent_workers: bool = True
    pin_memory: bool | Literal["auto"] = "auto"
    channels_last: bool = False
    progress_bar: bool = True
    limit_batches: float | None = Field(None, gt=0)


class DataConfig(_Strict):
    """One dataset's block under ``data:``. Fields a dataset does not use stay at defaults."""

    source: Literal["auto", "remote", "bundled", "synthetic"] = "auto"
    mirrors: list[str] = []
    path: str | None = None
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    max_samples: int | None = Field(None, ge=10)
    timeout: float = Field(10.0, gt=0)
    retries: int = Field(2, ge=0)
    total_timeout: float = Field(1800.0, gt=0)
    max_unpacked_mb: int = Field(4096, ge=1)
    max_ratio: float = Field(100.0, gt=1)
    # images
    image_size: int = Field(150, ge=8)
    split_sizes: list[int] | None = None
    synthetic_size: int = Field(600, ge=10)
    # the synthetic image fallback is drawn and stored at this size, not image_size
    synthetic_image_size: int = Field(64, ge=8)
    # text
    vocab_size: int = Field(10000, ge=10)
    max_len: int = Field(200, ge=4)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if self.split_sizes is not None and (
            len(self.split_sizes) != 3 or any(n < 1 for n in self.split_sizes)
        ):
            raise ValueError(f"split_sizes must be three positive counts, got {self.split_sizes}")
        return self


class AugmentStep(_Strict):
    """One albumentations transform: ``{name: Affine, args: {...}}``."""

    name: str
    args: dict[str, Any] = {}


FINETUNE_KEYS: dict[str, type | tuple[type, ...]] = {"unfreeze_epoch": int,
                                                     "backbone_lr": (int, float)}


class ExperimentConfig(_Strict):
    dataset: Literal["mnist", "cats_vs_dogs", "imdb"]
    model: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    patience: int | None = Field(None, ge=1)
    model_options: dict[str, Any] = {}
    augment: list[AugmentStep] = []
    # transfer learning: start from another experiment's best weights, unfreeze later
    init_from: str | None = None
    finetune: dict[str, Any] = {}

    @model_validator(mode="after")
    def _check_model(self) -> ExperimentConfig:
        from nnlab.models.registry import check_model

        check_model(self.model, self.model_options)
        return self

    @model_validator(mode="after")
    def _check_finetune(self) -> ExperimentConfig:
        # read by nets that define param_groups (models/transfer.py): when the trainable part
        # of a pretrained base joins (epoch), and its learning rate
        for key, value in self.finetune.items():
            if key not in FINETUNE_KEYS:
                raise ValueError(f"finetune.{key}: unknown key (known: {', '.join(FINETUNE_KEYS)})")
            if isinstance(value, bool) or not isinstance(value, FINETUNE_KEYS[key]) or value < 0:
                raise ValueError(f"finetune.{key}: expected a number >= 0, got {value!r}")
        return self


class Params(_Strict):
    seed: int = 42
    trainer: TrainerConfig = TrainerConfig()
    data: dict[Literal["mnist", "cats_vs_dogs", "imdb"], DataConfig] = {}
    experiments: dict[str, ExperimentConfig]

    @model_validator(mode="after")
    def _check_refs(self) -> Params:
        for name, exp in self.experiments.items():
            if exp.dataset not in self.data:
                raise ValueError(
                    f"experiments.{name}.dataset: {exp.dataset!r} has no block under data:"
                )
            if exp.init_from is not None and exp.init_from not in self.experiments:
                raise ValueError(
                    f"experiments.{name}.init_from: unknown experiment {exp.init_from!r}"
                )
        return self

    def experiment(self, name: str) -> ExperimentConfig:
        if name not in self.experiments:
            known = ", ".join(sorted(self.experiments))
            raise ConfigError(f"{PARAMS_FILE}: no experiment {name!r} (known: {known})")
        return self.experiments[name]

    def dataset(self, name: str) -> DataConfig:
        if name not in self.data:
            known = ", ".join(sorted(self.data))
            raise ConfigError(f"{PARAMS_FILE}: no dataset {name!r} under data: (known: {known})")
        return self.data[name]

    def flat(self, experiment: str) -> dict[str, Any]:
        """Every param that shapes one experiment, flattened to dotted keys (for MLflow)."""
        exp = self.experiment(experiment)
        tree = {
            "seed": self.seed,
            "trainer": self.trainer.model_dump(),
            "data": {exp.dataset: self.dataset(exp.dataset).model_dump()},
            "experiment": exp.model_dump(),
        }
        return flatten(tree)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = tree
    return out


def _describe(err: ValidationError, raw: dict) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key")
        elif e["type"] == "literal_error" and loc:
            lines.append(f"{loc}: {e.get('input')!r} is not allowed ({msg})")
        elif loc:
            lines.append(f"{loc}: {msg} (got {e.get('input')!r})")
        else:
            lines.append(msg)
    return "; ".join(lines)


def parse_params(raw: Any, where: str = PARAMS_FILE) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{where}: {_describe(err, raw)}") from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run nnlab from the project root)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_params(raw, str(path))
