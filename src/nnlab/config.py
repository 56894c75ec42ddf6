"""params.yaml, typed and strict (no torch, no Lightning; ``nnlab.checks`` asks the libraries)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML, YAMLError

from nnlab.files import decode_text, regular_file
from nnlab.log import one_line
from nnlab.paths import check_name

PARAMS_FILE = "params.yaml"
MAX_BYTES = 2**20  # 1 MiB: a params file larger than this is not one
KINDS = ("mnist", "image_folder", "text_folder", "text_table")  # the readers in nnlab.data


class ConfigError(ValueError):
    """params.yaml is missing, malformed or holds an invalid value."""


def _key_error(text: str) -> PydanticCustomError:
    """``<key>: <message>``, the key dotted and relative to the model that raises it."""
    return PydanticCustomError("nnlab_key", "{text}", {"text": text})


def _expected(what: str) -> WrapValidator:
    """One message, ``expected <what>``, for a value that none of a union's types takes."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(f"expected {what}") from None

    return WrapValidator(validate)


Name = Annotated[str, AfterValidator(check_name)]  # a key that names a folder


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        known = [field.alias or name for name, field in cls.model_fields.items()]
        if isinstance(data, dict) and (unknown := [k for k in data if k not in known]):
            raise _key_error(f"{unknown[0]}: unknown key (known: {', '.join(known)})")
        return data


LENGTH = "training length is experiments.<name>.epochs (and .patience)"
NOT_IN_TRAINER = {  # lightning.Trainer arguments that nnlab sets itself or reads elsewhere
    **dict.fromkeys(("max_epochs", "min_epochs", "max_steps", "min_steps"), LENGTH),
    **{k: f"moved to loader.{k}" for k in ("num_workers", "persistent_workers", "pin_memory")},
    **dict.fromkeys(
        ("logger", "callbacks", "default_root_dir", "enable_checkpointing", "plugins"),
        "set by nnlab (MLflow, checkpoints in models/<experiment>/, early stopping by patience)",
    ),
}


class TrainerConfig(BaseModel):
    """``lightning.Trainer``'s keyword arguments: nnlab's defaults, others as written (checks)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    accelerator: Any = "auto"
    devices: Any = "auto"
    strategy: Any = "auto"
    num_nodes: Any = 1
    precision: Any = "32-true"
    deterministic: Any = "warn"
    log_every_n_steps: Any = 10
    enable_progress_bar: Any = True

    @model_validator(mode="after")
    def _check(self) -> TrainerConfig:
        if key := next((k for k in self.model_extra or () if k in NOT_IN_TRAINER), None):
            raise _key_error(f"{key}: {NOT_IN_TRAINER[key]}")
        cores = os.cpu_count() or 1
        if self.accelerator == "cpu" and type(self.devices) is int and self.devices > cores:
            raise _key_error(f"devices: {self.devices} processes but {cores} CPU cores")
        return self

    def kwargs(self) -> dict[str, Any]:
        """For ``lightning.Trainer``; ``precision: auto``: bf16 where native, else fp32 or fp16."""
        kwargs = self.model_dump()
        if kwargs["precision"] == "auto":
            kwargs["precision"] = "bf16-mixed" if cpu_has_bf16() else "32-true"
            if kwargs["accelerator"] != "cpu":
                import torch

                if torch.cuda.is_available():
                    bf16 = torch.cuda.is_bf16_supported()
                    kwargs["precision"] = "bf16-mixed" if bf16 else "16-mixed"
        return kwargs


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (else it is emulated, slower than fp32)."""
    try:
        words = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in words or "amx_bf16" in words


class LoaderConfig(_Strict):
    """The DataLoaders and torch threads of each training/evaluation process."""

    num_workers: int = Field(0, ge=0)
    persistent_workers: bool = True
    pin_memory: Annotated[Literal["auto"] | bool, _expected('true, false or "auto"')] = "auto"
    # torch threads per process; auto: the cores shared among the jobs running at once
    threads: Annotated[Literal["auto"] | PositiveInt, _expected('an int >= 1 or "auto"')] = "auto"


PIN = re.compile(r"sha256=[0-9a-fA-F]{64}|md5=[0-9a-fA-F]{32}")  # a mirror URL's #fragment


def _check_mirror(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path):
        raise ValueError("expected an http(s):// or file:// URL")
    if "#" in url and PIN.fullmatch(parts.fragment) is None:
        raise ValueError("a #fragment pins the file: #sha256=<64 hex> or #md5=<32 hex>")
    return url


Mirrors = list[Annotated[str, AfterValidator(_check_mirror)]]


class DataConfig(_Strict):
    """What every dataset block has: its kind, where the data comes from, how hard to try."""

    kind: str
    source: str = "auto"  # each kind narrows it to the sources it has
    mirrors: Mirrors = []
    path: str | None = None  # relative to the project, absolute, or starting with ~
    timeout: float = Field(10.0, gt=0, le=300)  # seconds without a byte before a retry
    retries: int = Field(2, ge=0, le=10)
    total_timeout: float = Field(1800.0, gt=0, le=86400)  # seconds per download attempt
    max_unpacked_mb: int = Field(4096, ge=1)  # refuse archives that unpack to more
    max_ratio: float = Field(100.0, ge=1)  # ... or that compress better than this
    max_samples: int | None = Field(None, ge=10)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise _key_error(
                "test_fraction: val_fraction + test_fraction must be < 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if self.path is None and not self.mirrors and self.source in ("auto", "remote"):
            raise _key_error("path: required: a folder or file (or mirrors:, or offline source:)")
        return self

    def class_names(self) -> dict[str, str] | None:
        """``classes:`` as {label in the data: class name}, in class order; None: all of them."""
        classes = getattr(self, "classes", None)  # none in MNIST
        if isinstance(classes, list):
            return {c: c for c in classes}
        return None if classes is None else dict(classes)


class MnistConfig(DataConfig):
    kind: Literal["mnist"]
    source: Literal["auto", "remote", "bundled"] = "auto"
    mirrors: Mirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]


class _UserDataConfig(DataConfig):
    """A dataset of labelled files, with a seeded synthetic substitute offline."""

    source: Literal["auto", "remote", "synthetic"] = "auto"
    # a list fixes the class order or selects a subset; a mapping also names them
    classes: Annotated[
        list[str] | dict[str, str] | None, _expected("a list of names or {label in the data: name}")
    ] = None
    synthetic_size: int = Field(600, ge=10)

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, value: list[str] | dict[str, str] | None) -> Any:
        names = list(value.values()) if isinstance(value, dict) else value or []
        if value is not None and len(value) < 2:
            raise ValueError("a classifier needs at least two classes")
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"{_quote(twice[0])} is listed twice")
        return value


class ImageFolderConfig(_UserDataConfig):
    kind: Literal["image_folder"]
    image_size: int = Field(150, ge=8, le=1024)  # the side of the square images
    channels: Literal[1, 3] = 3
    split_sizes: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=3, max_length=3)
    # the synthetic fallback is drawn and stored at this size, not image_size
    synthetic_image_size: int = Field(64, ge=8, le=1024)


class _TextConfig(_UserDataConfig):
    """A dataset whose samples have lengths."""

    vocab_size: int = Field(10000, ge=10)
    max_len: int = Field(200, ge=4)
    truncate: Literal["first", "last"] = "last"  # which max_len tokens of a longer text stay


class TextFolderConfig(_TextConfig):
    kind: Literal["text_folder"]


class TextTableConfig(_TextConfig):
    kind: Literal["text_table"]
    text_column: str = "text"
    label_column: str = "label"


DataBlock = Annotated[
    MnistConfig | ImageFolderConfig | TextFolderConfig | TextTableConfig,
    Field(discriminator="kind"),
]


class FeaturesConfig(_Strict):
    """A derived dataset: a frozen pretrained base run once over every split of ``from``."""

    from_: str = Field(alias="from")
    backbone: Literal["vgg16", "efficientnet_lite0"]
    pool: Literal["avg", "max", "flatten"] = "avg"
    source: Literal["auto", "remote", "bundled"] = "auto"
    weights: str = "imagenet"  # "imagenet", "none" or a file
    batch_size: int = Field(64, ge=1)
    timeout: float = Field(10.0, gt=0, le=300)


class AugmentStep(_Strict):
    """One albumentations transform: ``{name: Affine, args: {...}}``."""

    name: str
    args: dict[str, Any] = {}


class FinetuneConfig(_Strict):
    """A pretrained base's trainable part joins training at ``unfreeze_epoch``."""

    unfreeze_epoch: int = Field(0, ge=0)
    backbone_lr: float | None = Field(None, gt=0)  # None: lr / 10


class ExperimentConfig(_Strict):
    dataset: str  # a key of data: or of features:
    model: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    patience: int | None = Field(None, ge=1)
    # the LR over training: a linear warmup over warmup_epochs, then constant or a cosine decay
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: float = Field(0, ge=0)
    model_options: dict[str, Any] = {}
    augment: list[AugmentStep] = []
    finetune: FinetuneConfig | None = None
    channels_last: bool = False
    # text: training batches of texts of similar length, each trimmed to its longest
    bucket_by_length: bool = False

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if self.momentum != 0 and self.optimizer in ("adam", "adamw"):
            raise _key_error(f"momentum: {self.optimizer} has no momentum (got {self.momentum})")
        if self.warmup_epochs > self.epochs:
            raise _key_error(f"warmup_epochs: {self.warmup_epochs} > epochs ({self.epochs})")
        if self.finetune is not None and (u := self.finetune.unfreeze_epoch) >= self.epochs:
            raise _key_error(f"finetune.unfreeze_epoch: {u} >= epochs ({self.epochs}), base frozen")
        return self


class FiguresConfig(_Strict):
    """What evaluate draws for conv nets (the lecture's "looking inside" pictures)."""

    images: int = Field(6, ge=1, le=64)  # test images in the Grad-CAM and feature-map figures
    filters: int = Field(8, ge=0, le=64)  # filter patterns per layer (0: none)
    steps: int = Field(30, ge=1, le=1000)  # gradient-ascent steps per pattern


class TrackingConfig(_Strict):
    # the best checkpoint as an MLflow pyfunc model, registered under the experiment's name
    log_model: bool = True


class Params(_Strict):
    seed: int = Field(42, ge=0, le=2**32 - 1)  # the range seed_everything takes
    trainer: TrainerConfig = TrainerConfig()
    loader: LoaderConfig = LoaderConfig()
    tracking: TrackingConfig = TrackingConfig()
    data: dict[Name, DataBlock] = {}
    features: dict[Name, FeaturesConfig] = {}
    experiments: dict[Name, ExperimentConfig]
    figures: FiguresConfig = FiguresConfig()

    @model_validator(mode="after")
    def _check_names(self) -> Params:
        data = self.data
        images = [n for n, d in data.items() if not isinstance(d, _TextConfig)]
        texts = [n for n in data if n not in images]
        for name, feat in self.features.items():
            if feat.from_ not in images:
                kind = data[feat.from_].kind if feat.from_ in data else "not under data:"
                raise _key_error(
                    f"features.{name}.from: {_quote(feat.from_)} ({kind}) is not an image dataset "
                    f"(image datasets: {_listed(images)})"
                )
        for name, exp in self.experiments.items():
            if exp.dataset not in data and exp.dataset not in self.features:
                raise _key_error(
                    f"experiments.{name}.dataset: {_quote(exp.dataset)} has no block under data: "
                    f"or features: (known: {_listed([*data, *self.features])})"
                )
            if exp.bucket_by_length and exp.dataset not in texts:
                raise _key_error(
                    f"experiments.{name}.bucket_by_length: {_quote(exp.dataset)} has no lengths "
                    f"to bucket by (text datasets only: {_listed(texts)})"
                )
        split = [*(f"data.{n}" for n in data), *(f"features.{n}" for n in self.features)]
        for keys in ([f"experiments.{n}" for n in self.experiments], split):
            seen: dict[str, str] = {}
            for key in keys:  # a folder each; macOS and Windows ignore case in names
                if (first := seen.setdefault(key.split(".", 1)[1].lower(), key)) != key:
                    raise _key_error(f"{key}: one folder with {first} (case ignored); rename one")
        return self

    def experiment(self, name: str) -> ExperimentConfig:
        return _lookup(self.experiments, name, "experiment", "experiments")

    def dataset(self, name: str) -> DataConfig:
        return _lookup(self.data, name, "dataset", "data")

    def cache(self, name: str) -> FeaturesConfig:
        return _lookup(self.features, name, "features cache", "features")

    def source_dataset(self, name: str) -> str:
        """The key of data: that a dataset or a features cache comes from."""
        if name in self.features:
            return self.features[name].from_
        self.dataset(name)  # neither: a ConfigError naming the datasets
        return name

    def flat(self, experiment: str) -> dict[str, Any]:
        """Every param that shapes one experiment, as dotted keys (for MLflow)."""
        return flatten(self.tree(experiment))

    def tree(self, experiment: str) -> dict[str, Any]:
        """Every param that shapes one experiment, nested as params.yaml (its own as experiment)."""
        exp = self.experiment(experiment)
        source = self.source_dataset(exp.dataset)
        tree: dict[str, Any] = {
            "seed": self.seed,
            "trainer": self.trainer.kwargs(),
            "loader": self.loader.model_dump(),
            "data": {source: self.dataset(source).model_dump()},
        }
        if exp.dataset in self.features:
            tree["features"] = {exp.dataset: self.features[exp.dataset].model_dump(by_alias=True)}
        tree["experiment"] = exp.model_dump()
        return tree


def _lookup(blocks: dict[str, Any], name: str, what: str, section: str) -> Any:
    if name not in blocks:
        raise ConfigError(
            f"{PARAMS_FILE}: no {what} {_quote(name)} under {section}: (known: {_listed(blocks)})"
        )
    return blocks[name]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        tree = dict(enumerate(tree))  # augment steps: augment.0.name
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    return {k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}{key}.").items()}


def _listed(names: Any) -> str:
    return ", ".join(names) or "none"


def _quote(name: Any) -> str:
    return one_line(repr(name), 60)


def show(value: Any) -> str:
    """A value as a message shows it: short, YAML-like, never a whole block."""
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key{'s' * (len(value) != 1)}"
    if isinstance(value, list | tuple):
        flat = all(isinstance(v, int | float | bool) for v in value)
        return repr(list(value)) if flat and len(value) <= 6 else f"a list of {len(value)}"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return f"the string {_quote(value)}" if isinstance(value, str) else _quote(value)


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc, kind, got = e["loc"], e["type"], e.get("input")
        if loc[:1] == ("data",) and loc[2:3] and loc[2] in KINDS:  # the union's tag
            loc = loc[:2] + loc[3:]
        in_key = loc[-1:] == ("[key]",)  # a key of a mapping of names
        if in_key or kind == "invalid_key":  # ... or of a model
            loc = loc[: -2 if in_key else -1]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)[1:]
        if kind == "nnlab_key":
            key, _, text = e["ctx"]["text"].partition(": ")
            where = ".".join(filter(None, (where, key)))
        elif kind == "invalid_key" or (in_key and kind == "string_type"):
            text = f"key {show(got)} is not a string"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            text = f"expected a mapping (got {show(got)})"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            where += ".kind"
            found = f"got {show(got['kind'])}" if "kind" in got else "missing"
            text = f"expected one of {', '.join(KINDS)} ({found})"
        elif kind == "missing":
            text = "required key missing"
        else:
            text = one_line(e["msg"].removeprefix("Value error, "), 200)
            if kind == "float_type" and isinstance(got, str):
                text += " (write numbers unquoted, e.g. 0.001 or 1.0e-3)"
            text += f" (got {show(got)})"
        lines.append(f"{where or 'top level'}: {text}")
    if len(lines) > 5:
        lines[5:] = [f"and {len(lines) - 5} more"]
    return "; ".join(lines)


def parse_params(raw: Any, where: str = PARAMS_FILE) -> Params:
    if raw is None:
        raise ConfigError(f"{where}: an empty file, not params")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{where}: {_describe(err)}") from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    try:
        if (size := regular_file(path).stat().st_size) > MAX_BYTES:
            raise ConfigError(f"{path}: {size} bytes; a params file is text of at most 1 MiB")
        # as DVC reads it: YAML 1.2 (1e-3 is a float), no duplicate keys
        raw = YAML(typ="safe", pure=True).load(decode_text(path.read_bytes(), path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run nnlab from the project root)") from None
    except (OSError, ValueError) as err:  # not a regular file, not text, unread: each names it
        raise ConfigError(one_line(err)) from None
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}" if mark else err
        raise ConfigError(f"{path}: {one_line(at)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a params file") from None
    return parse_params(raw, str(path))
