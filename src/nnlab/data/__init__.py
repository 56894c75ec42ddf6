"""Data: one reader module per dataset *kind* (``data.<name>.kind`` in params.yaml), each with
``download(cfg, out_dir, name) -> manifest`` (raw files, through
:func:`nnlab.data.sources.download_raw`), ``split(cfg, raw_dir, seed, name) -> Prepared``,
``spec(cfg, name, root)`` (what split will produce, from params) and ``load_input(source, spec)``
(one input as the model sees it)."""

from __future__ import annotations

import importlib
from types import ModuleType

from nnlab.config import KINDS


def reader(kind: str) -> ModuleType:
    """The reader module of a dataset kind (also recorded as ``reader`` in a split's meta)."""
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r} (known: {', '.join(KINDS)})")
    return importlib.import_module(f"nnlab.data.{kind}")
