"""Data: one reader module per dataset kind (``download``, ``split``, ``spec``, ``load_input``),
and what the readers share: split folder names, the labels every split needs, skipped files."""

from __future__ import annotations

import importlib
from collections import Counter
from types import ModuleType
from typing import Any

from nnlab.config import KINDS, DataConfig
from nnlab.data.prepare import pick_classes
from nnlab.log import info
from nnlab.paths import SPLITS

SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "test": "test"}


def reader(kind: str) -> ModuleType:
    """The reader module of a dataset kind (also recorded as ``reader`` in a split's meta)."""
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r} (known: {', '.join(KINDS)})")
    return importlib.import_module(f"nnlab.data.{'text' if kind.startswith('text_') else kind}")


def pick_labels(
    counts: dict[str, dict[str, int]], cfg: DataConfig, name: str, shown: str, what: str
) -> tuple[list[str], list[str], dict[str, int]]:
    """:func:`nnlab.data.prepare.pick_classes` over {split: {label: count}}; every split must
    hold every label picked (``what`` names a label's files in the error)."""
    total = sum(map(Counter, counts.values()), Counter())
    labels, names, left_out = pick_classes(dict(total), cfg, name, shown)
    for split, have in counts.items():
        if missing := [c for c in labels if c not in have]:
            raise ValueError(
                f"{shown}: no {what} {missing[0]!r} in the {split} split (it has "
                f"{', '.join(map(repr, have))}); every split needs the same labels (or select "
                f"them with data.{name}.classes)"
            )
    return labels, names, left_out


def split_plan(have: set[str], cfg: DataConfig) -> tuple[dict[str, dict[str, float]], str]:
    """{the data's split: {train, val or test: fraction of it}}: the data's own splits kept, a
    missing val cut from train (or val halved into val and test), else all pooled and cut."""
    vf, tf = cfg.val_fraction, cfg.test_fraction
    if have >= {"train", "val", "test"}:
        return {s: {s: 1.0} for s in SPLITS}, "kept the data's train/val/test splits"
    if have >= {"train", "test"}:
        train = {"train": 1 - vf, "val": vf}
        return {"train": train, "test": {"test": 1.0}}, "kept test; val_fraction of train as val"
    if have >= {"train", "val"}:
        halves = {"val": 0.5, "test": 0.5}
        return {"train": {"train": 1.0}, "val": halves}, "kept train; halved val into val and test"
    pool = {"train": 1 - vf - tf, "val": vf, "test": tf}
    return {"pool": pool}, "val and test carved out (fractions)"


def skipped_report(skipped: list[dict[str, Any]], shown: str, what: str) -> dict[str, Any]:
    """The manifest entries for what a reader skipped, said in one line when anything was."""
    if skipped:
        first = skipped[0]
        row = f":{first['row']}" if "row" in first else ""
        info(
            f"{shown}: skipped {len(skipped)} {what} (listed in the manifest), e.g. "
            f"{first['file']}{row}: {first['reason']}"
        )
    return {"skipped_count": len(skipped), "skipped": skipped[:100]}  # all counted, 100 listed
