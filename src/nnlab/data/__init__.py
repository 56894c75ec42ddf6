"""Data: one reader module per dataset kind (``download``, ``split``, ``spec``, ``load_input``)."""

from __future__ import annotations

import importlib
import math
from collections import Counter
from types import ModuleType
from typing import Any

import numpy as np

from nnlab.config import KINDS, DataConfig
from nnlab.log import info, warn
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
    """(labels, class names, left-out counts): all sorted, or ``classes:``; each in every split."""
    found = dict(sum(map(Counter, counts.values()), Counter()))
    names = cfg.class_names() or {c: c for c in sorted(found)}
    if missing := [c for c in names if c not in found]:
        raise ValueError(
            f"data.{name}.classes: {missing[0]!r} is not in the data ({shown} "
            f"has {', '.join(map(repr, sorted(found))) or 'no labels'})"
        )
    if len(names) < 2:
        raise ValueError(
            f"{shown}: {len(names)} class ({', '.join(map(repr, names))}); a "
            f"classifier needs two or more"
        )
    if left_out := {c: n for c, n in sorted(found.items()) if c not in names}:
        info(
            f"{shown}: left out {sum(left_out.values())} samples of labels not in "
            f"data.{name}.classes: {', '.join(map(repr, left_out))}"
        )
    for split, have in counts.items():
        if missing := [c for c in names if c not in have]:
            raise ValueError(
                f"{shown}: no {what} {missing[0]!r} in the {split} split (it has "
                f"{', '.join(map(repr, have))}); every split needs the same labels (or select "
                f"them with data.{name}.classes)"
            )
    return list(names), list(names.values()), left_out


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


Layout = dict[str, dict[str, list]]  # split (or "pool") -> label -> items (files, texts)
Plan = dict[str, tuple[int, list[tuple[int, Any]]]]  # split -> (quota, [(label index, item)])


def label_counts(layout: Layout) -> dict[str, dict[str, int]]:
    return {s: {c: len(items) for c, items in by.items()} for s, by in layout.items()}


def draw_plan(
    layout: Layout, classes: list[str], cfg: DataConfig, seed: int, name: str, what: str
) -> tuple[Plan, dict[str, Any]]:
    """Per split (quota, [(label index, item)]) and manifest entries; the data's own splits kept."""
    rng = np.random.default_rng(seed)
    # {the data's split: {train, val or test: fraction of it}}
    vf, tf, have = cfg.val_fraction, cfg.test_fraction, set(layout)
    if have >= {"train", "val", "test"}:
        parts, how = {s: {s: 1.0} for s in SPLITS}, "kept the data's train/val/test splits"
    elif have >= {"train", "test"}:
        parts = {"train": {"train": 1 - vf, "val": vf}, "test": {"test": 1.0}}
        how = "kept test; val_fraction of train as val"
    elif have >= {"train", "val"}:
        parts = {"train": {"train": 1.0}, "val": {"val": 0.5, "test": 0.5}}
        how = "kept train; halved val into val and test"
    else:  # all pooled, then cut (said below)
        parts, how = {"pool": {"train": 1 - vf - tf, "val": vf, "test": tf}}, ""
        layout = {"pool": {c: [f for split in layout.values() for f in split[c]] for c in classes}}
    total = sum(len(f) for split in layout.values() for c, f in split.items() if c in classes)
    cap = min(1.0, cfg.max_samples / total) if cfg.max_samples else 1.0
    plan, done = {}, {"split": how}
    for source, fractions in parts.items():
        n = math.floor(sum(len(layout[source][c]) for c in classes) * cap)
        first, *rest = fractions
        want = {s: round(n * fractions[s]) for s in rest}
        want = {first: n - sum(want.values()), **want}
        if source == "pool" and (asked := getattr(cfg, "split_sizes", None)):
            want = dict(zip(SPLITS, asked, strict=True))
            if sum(asked) > n:  # fewer images than asked for: same proportions, said
                done["split_sizes_scaled"] = {"asked": list(asked), "images": n}
                want = {s: math.floor(w * n / sum(asked)) for s, w in want.items()}
                warn(
                    f"split@{name}: data.{name}.split_sizes asks for {list(asked)} images but "
                    f"there are {n}: drew {list(want.values())} (the same proportions)"
                )
        if source == "pool":
            drew = f"drew train/val/test = {list(want.values())} (stratified, seed {seed})"
            done["split"] = f"pooled {total} {what}; {drew}"
        pool = layout[source]
        for c in classes:
            if (n := len(pool[c])) < len(want):
                raise ValueError(
                    f"split@{name}: class {c!r} has {n} sample{'s' * (n != 1)} in the "
                    f"{source.replace('pool', 'pooled')} {what}, fewer than {' and '.join(want)} "
                    f"need (one each): add some, or leave it out with data.{name}.classes"
                )
        # each class shuffled and spread evenly through one order, so any stretch is stratified;
        # each split's stretch holds its quota, then spares for unreadable files (never another's)
        spread = []
        for k, c in enumerate(classes):
            items = [pool[c][i] for i in rng.permutation(len(pool[c]))]
            spread += [((j + 0.5) / len(items), k, x) for j, x in enumerate(items)]
        order = [(k, x) for _, k, x in sorted(spread)]
        cuts = np.cumsum(list(want.values()))[:-1] * len(order) // max(sum(want.values()), 1)
        bounds = [0, *cuts.tolist(), len(order)]
        for (s, quota), a, b in zip(want.items(), bounds[:-1], bounds[1:], strict=True):
            plan[s] = (quota, order[a:b])
    return plan, done
