"""Datasets: one module per dataset, each with ``download`` and ``split`` functions.

A dataset module provides

* ``download(cfg, out_dir, seed) -> manifest``: fill ``out_dir`` with raw files (remote, a
  local ``path:``, or the offline fallback through :func:`nnlab.log.with_fallback`);
* ``split(cfg, raw_dir, seed) -> Prepared``: read the raw files into arrays, split them.

The stage functions in :mod:`nnlab.data.prepare` do the rest (atomic outputs, manifests).
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = {
    "mnist": "nnlab.data.mnist",
    "cats_vs_dogs": "nnlab.data.cats_vs_dogs",
    "imdb": "nnlab.data.imdb",
}


def dataset_module(name: str) -> ModuleType:
    if name not in MODULES:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(MODULES)})")
    return importlib.import_module(MODULES[name])
