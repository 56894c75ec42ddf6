"""split@<dataset>: the raw files decoded and split, as arrays in data/split/ (the format of
:mod:`nnlab.data.prepare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnlab import paths
from nnlab.config import Params
from nnlab.data import reader
from nnlab.data.prepare import Prepared, StageOrderError, class_counts, refuse_empty, split_digest
from nnlab.files import atomic_dir, interruptible, read_json, write_json
from nnlab.log import info, warn
from nnlab.paths import SPLITS


def run(params: Params, dataset: str, root: Path = Path(".")) -> dict[str, Any]:
    cfg = params.dataset(dataset)
    raw = paths.raw_dir(dataset, root)
    if not (raw / paths.MANIFEST).is_file():
        raise StageOrderError(
            f"{raw}: no downloaded data; run `nnlab download {dataset}` "
            f"(or `dvc repro download@{dataset}`) first"
        )
    raw_manifest = read_json(raw / paths.MANIFEST)
    with interruptible():
        prepared: Prepared = reader(cfg.kind).split(cfg, raw, params.seed, dataset)
    arrays = prepared.arrays
    refuse_empty(dataset, {s: len(arrays[s]["y"]) for s in SPLITS}, cfg)
    by_class = {s: class_counts(arrays[s]["y"], prepared.classes) for s in SPLITS}
    for s, counts in by_class.items():
        if absent := [c for c, n in counts.items() if n == 0]:
            warn(
                f"split@{dataset}: no {s} sample of class {', '.join(map(repr, absent))}: its "
                f"{s} scores will be missing (more data, or other split sizes or fractions)"
            )
    out = paths.split_dir(dataset, root)
    with interruptible(), atomic_dir(out) as tmp:
        for split in SPLITS:
            for key, arr in arrays[split].items():
                np.save(tmp / f"{split}_{key}.npy", arr, allow_pickle=False)
        shape = list(arrays["train"]["x"].shape[1:])
        meta = {
            "dataset": dataset,
            "kind": prepared.kind,
            "reader": cfg.kind,
            "input_shape": shape[2:] + shape[:2] if prepared.kind == "image" else shape,
            "classes": prepared.classes,
            "source": raw_manifest.get("source", "unknown"),
            **prepared.meta,
        }
        write_json(tmp / paths.META, meta)
        for name, obj in prepared.files.items():
            write_json(tmp / name, obj)
        manifest = {
            "dataset": dataset,
            "source": meta["source"],
            "download": raw_manifest,  # where the data came from
            "seed": params.seed,
            "counts": {s: len(arrays[s]["y"]) for s in SPLITS},
            "class_counts": by_class,
            "digests": {s: split_digest(arrays[s]) for s in SPLITS},
            **prepared.manifest,
        }
        write_json(tmp / paths.MANIFEST, manifest)
    info(f"split@{dataset}: {manifest['counts']} ({meta['source']}) -> {out}")
    return manifest
