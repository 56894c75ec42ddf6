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
    enable_progress_bar: bool = True
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class LoaderConfig(_Strict):
    num_workers: int = Field(0, ge=0)
    persistent_workers: bool = True
    pin_memory: bool | Literal["auto"] = "auto"
    threads: int | Literal["auto"] = "auto"


class FinetuneConfig(_Strict):
    unfreeze_epoch: int = Field(0, ge=0)
    backbone_lr: float | None = Field(None, gt=0)


class FeaturesConfig(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: str = Field(alias="from")
    backbone: Literal["vgg16", "efficientnet_lite0"]
    pool: Literal["avg", "max", "flatten"] = "avg"
    source: Literal["auto", "remote", "bundled"] = "auto"
    weights: str = "imagenet"
    batch_size: int = Field(64, ge=1)
    timeout: float = Field(10.0, gt=0)


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


class ExperimentConfig(_Strict):
    dataset: str
    model: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    patience: int | None = Field(None, ge=1)
    model_options: dict[str, Any] = {}
    augment: list[AugmentStep] = []
    finetune: FinetuneConfig | None = None
    channels_last: bool = False

    @model_validator(mode="after")
    def _check_model(self) -> ExperimentConfig:
        from nnlab.models.registry import check_model

        check_model(self.model, self.model_options)
        return self



class Params(_Strict):
    seed: int = 42
    trainer: TrainerConfig = TrainerConfig()
    loader: LoaderConfig = LoaderConfig()
    features: dict[str, FeaturesConfig] = {}
    data: dict[Literal["mnist", "cats_vs_dogs", "imdb"], DataConfig] = {}
    experiments: dict[str, ExperimentConfig]

    @model_validator(mode="after")
    def _check_refs(self) -> Params:
        for name, exp in self.experiments.items():
            if exp.dataset not in self.data and exp.dataset not in self.features:
                raise ValueError(
                    f"experiments.{name}.dataset: {exp.dataset!r} has no block under data:"
                )
        return self

    def source_dataset(self, name: str) -> str:
        return self.features[name].from_ if name in self.features else name

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
            "loader": self.loader.model_dump(),
            "data": {(src := self.source_dataset(exp.dataset)): self.dataset(src).model_dump()},
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


def check_experiment(params: Params, name: str) -> None:
    """Checks that need torch: placeholder until the config rewrite lands."""
    params.experiment(name)
