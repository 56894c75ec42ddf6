"""split@<dataset>: the raw files decoded and split into data/split/ (see nnlab.data.prepare)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnlab import paths
from nnlab.config import Params
from nnlab.data import reader
from nnlab.data.prepare import refuse_empty, split_digest, stage_output
from nnlab.files import atomic_dir, interruptible, read_json, write_json
from nnlab.log import info, warn
from nnlab.paths import SPLITS


def run(params: Params, dataset: str, root: Path = Path(".")) -> dict[str, Any]:
    cfg = params.dataset(dataset)
    raw = stage_output(paths.raw_dir(dataset, root), paths.MANIFEST, "download", dataset)
    raw_manifest = read_json(raw / paths.MANIFEST)
    with interruptible():
        prepared = reader(cfg.kind).split(cfg, raw, params.seed, dataset)
    arrays, classes = prepared.arrays, prepared.classes
    counts = {s: len(arrays[s]["y"]) for s in SPLITS}
    refuse_empty(dataset, counts, cfg)
    by_class = {}
    for s in SPLITS:
        by_class[s] = {c: int((arrays[s]["y"] == i).sum()) for i, c in enumerate(classes)}
        if absent := [c for c, n in by_class[s].items() if n == 0]:
            warn(
                f"split@{dataset}: no {s} sample of class {', '.join(map(repr, absent))}: its "
                f"{s} scores will be missing (more data, or other split sizes or fractions)"
            )
    source = raw_manifest.get("source", "unknown")
    shape = list(arrays["train"]["x"].shape[1:])
    shape = shape[2:] + shape[:2] if prepared.kind == "image" else shape  # channels first
    meta = {"dataset": dataset, "kind": prepared.kind, "reader": cfg.kind, "input_shape": shape}
    meta |= {"classes": classes, "source": source, **prepared.meta}
    digests = {s: split_digest(arrays[s]) for s in SPLITS}
    manifest = {"dataset": dataset, "source": source, "download": raw_manifest, "seed": params.seed}
    manifest |= {"counts": counts, "class_counts": by_class, "digests": digests}
    manifest |= prepared.manifest
    out = paths.split_dir(dataset, root)
    with interruptible(), atomic_dir(out) as tmp:
        for split in SPLITS:
            for key, arr in arrays[split].items():
                np.save(tmp / f"{split}_{key}.npy", arr, allow_pickle=False)
        for name, obj in {paths.META: meta, **prepared.files, paths.MANIFEST: manifest}.items():
            write_json(tmp / name, obj)
    info(f"split@{dataset}: {manifest['counts']} ({source}) -> {out}")
    return manifest
