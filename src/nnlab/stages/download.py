"""download@<dataset>: a dataset's raw files (or its loud offline substitute) in data/raw/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nnlab import paths
from nnlab.config import Params
from nnlab.data import reader
from nnlab.data.sources import data_path
from nnlab.files import atomic_dir, interruptible, write_json
from nnlab.log import info


def run(params: Params, dataset: str, root: Path = Path(".")) -> dict[str, Any]:
    cfg = params.dataset(dataset)
    if cfg.path:  # relative to the project, wherever nnlab runs
        cfg = cfg.model_copy(update={"path": str(data_path(cfg.path, root))})
    out = paths.raw_dir(dataset, root)
    t0 = time.perf_counter()
    with interruptible(), atomic_dir(out) as tmp:
        manifest = {"dataset": dataset, "kind": cfg.kind}
        manifest |= reader(cfg.kind).download(cfg, tmp, dataset)
        manifest["seconds"] = round(time.perf_counter() - t0, 2)
        write_json(tmp / paths.MANIFEST, manifest)
    info(f"download@{dataset}: {manifest['source']} -> {out}")
    return manifest
