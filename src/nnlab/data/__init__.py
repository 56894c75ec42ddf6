"""Datasets: a module per dataset, each with ``download(cfg, out_dir) -> manifest`` (raw files,
through :func:`nnlab.data.sources.download_raw`), ``split(cfg, raw_dir, seed) -> Prepared``,
``spec(cfg)`` and ``load_input(source, spec)`` (one input as the model sees it)."""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = {"mnist": "nnlab.data.mnist", "cats_vs_dogs": "nnlab.data.cats_vs_dogs",
           "imdb": "nnlab.data.imdb"}


def dataset_module(name: str) -> ModuleType:
    if name not in MODULES:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(MODULES)})")
    return importlib.import_module(MODULES[name])
