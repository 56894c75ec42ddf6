"""The split format (``data/split/<dataset>/``: arrays, meta, manifest), loaders, shared rules."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import paths
from nnlab.config import DataConfig
from nnlab.data.sources import data_path, is_archive
from nnlab.files import load_array, read_json
from nnlab.log import info
from nnlab.paths import SPLITS


class StageOrderError(RuntimeError):
    """A stage's input is missing: an earlier stage has not run."""


@dataclass
class Prepared:
    """What a reader's ``split`` returns: arrays per split plus metadata."""

    kind: str
    classes: list[str]
    arrays: dict[str, dict[str, np.ndarray]]  # split -> {"x":..., "y":..., ["len":...]}
    meta: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)  # extra JSON files to write


def refuse_empty(dataset: str, counts: dict[str, int], cfg: DataConfig) -> None:
    """One line naming the dataset and every split that would be empty."""
    if empty := [s for s in SPLITS if counts.get(s, 0) == 0]:
        raise ValueError(
            f"split@{dataset}: the {' and '.join(empty)} split would be empty "
            f"({counts}); raise data.{dataset}.max_samples (now {cfg.max_samples}) "
            f"or the split fractions"
        )


def planned_classes(
    cfg: DataConfig,
    name: str,
    root: Path,
    found_at: Callable[[Path], list[str]],
    substitute: list[str],
) -> list[str]:
    """The class names split@<name> will write: configured, downloaded, local, or substitute's."""
    if names := cfg.class_names():
        return list(names.values())
    raw = paths.raw_dir(name, root) / paths.MANIFEST
    if raw.is_file() and "classes" in (manifest := read_json(raw)):
        return list(manifest["classes"])
    if cfg.path and cfg.source != "synthetic":
        src = data_path(cfg.path, root)
        if src.is_dir() or (src.is_file() and not is_archive(src)):
            return sorted(found_at(src))
    if cfg.source != "synthetic":
        info(
            f"data.{name}: the class names are known once download@{name} has run; until "
            f"then taken to be the offline substitute's ({', '.join(substitute)})"
        )
    return substitute


def split_digest(arrays: dict[str, np.ndarray]) -> str:
    """A short sha256 of one split: every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()[:16]


def stage_output(folder: Path, name: str, stage: str, dataset: str) -> Path:
    """``folder`` once ``stage@dataset`` has written ``name`` in it, else StageOrderError."""
    if not (folder / name).is_file():
        raise StageOrderError(
            f"{folder}: no {stage}@{dataset} output; run `nnlab {stage} {dataset}` "
            f"(or `dvc repro {stage}@{dataset}`) first"
        )
    return folder


def _prepared_dir(dataset: str, root: Path = Path(".")) -> Path:
    return stage_output(paths.split_dir(dataset, root), paths.META, "split", dataset)


def load_meta(dataset: str, root: Path = Path(".")) -> dict[str, Any]:
    return read_json(_prepared_dir(dataset, root) / paths.META)


def split_digests(dataset: str, root: Path = Path(".")) -> dict[str, str]:
    """The content digest of each split, from the split's manifest ({} if it has none)."""
    manifest = _prepared_dir(dataset, root) / paths.MANIFEST
    return dict(read_json(manifest).get("digests", {})) if manifest.is_file() else {}


def load_arrays(dataset: str, split: str, root: Path = Path(".")) -> dict[str, np.ndarray]:
    """Memory-mapped arrays of one split: nothing is copied into RAM until indexed."""
    path = _prepared_dir(dataset, root)
    arrays = {f.stem[len(split) + 1 :]: load_array(f) for f in sorted(path.glob(f"{split}_*.npy"))}
    if "x" not in arrays or "y" not in arrays:
        raise StageOrderError(f"{path}: split {split!r} is missing; rerun split@{dataset}")
    return arrays
