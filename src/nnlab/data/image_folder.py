"""Image folders (``<split>/<class>/*`` or ``<class>/*``) -> uint8 arrays; unreadable: spares."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nnlab import paths
from nnlab.config import DataConfig
from nnlab.data import SPLIT_NAMES, Layout, draw_plan, label_counts, pick_labels, skipped_report
from nnlab.data.images import IMAGE_SUFFIXES, ImageReadError, load_image
from nnlab.data.prepare import Prepared, planned_classes
from nnlab.data.sources import Limits, download_raw, unpack_tree
from nnlab.data.synthetic import ANIMAL_CLASSES, draw_animal
from nnlab.files import read_json
from nnlab.log import info, warn
from nnlab.spec import DataSpec

SYNTHETIC = "synthetic cartoon cats and dogs"


def download(cfg: DataConfig, out_dir: Path, name: str) -> dict[str, Any]:
    def store(src: Path, shown: str) -> dict[str, Any]:
        images = out_dir / paths.RAW_IMAGES
        skipped = unpack_tree(src, images, shown, Limits.of(cfg))
        layout, ignored = find_layout(images, shown)
        counts = label_counts(layout)
        pick_labels(counts, cfg, name, shown, "class folder")  # fails here, not at split
        classes = sorted({c for cls in layout.values() for c in cls})
        found = {"layout": sorted(layout), "classes": classes, "ignored_files": len(ignored)}
        return {**skipped, **found, "counts": counts}

    drawn = {"generator": "nnlab.data.synthetic.draw_animal", "classes": list(ANIMAL_CLASSES)}
    drawn["drawn_by"] = f"split@{name} (synthetic_size, synthetic_image_size, seed)"
    return download_raw(
        cfg, out_dir, name, store, {paths.RAW_ARCHIVE: None}, lambda: drawn, SYNTHETIC
    )


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name != "__MACOSX"


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.is_dir() and _visible(p))  # of a file: none


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def find_layout(images: Path, shown: str | None = None) -> tuple[Layout, list[Path]]:
    """({split or "pool": {class: [image files]}}, [ignored files]); errors name ``shown``."""
    root = images  # unwrapped while it holds one folder of folders (cats_and_dogs_filtered/)
    while len(top := [p for p in root.iterdir() if _visible(p)]) == 1 and _dirs(top[0]):
        root = top[0]
    dirs = _dirs(root)
    ignored = [p for p in root.iterdir() if p.is_file()]
    by_split = {SPLIT_NAMES[d.name.lower()]: d for d in dirs if d.name.lower() in SPLIT_NAMES}
    if "train" in by_split:
        tops = {s: _dirs(d) for s, d in by_split.items()}
        ignored += [p for d in dirs if d not in by_split.values() for p in _files(d)]
    else:
        tops = {"pool": dirs}
    layout: Layout = {}
    for split, class_dirs in tops.items():
        layout[split] = {}
        for c in class_dirs:
            files = _files(c)
            layout[split][c.name] = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            ignored += [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
        if not layout[split]:
            where = root / ("" if split == "pool" else by_split[split].name)
            raise ValueError(
                f"{shown or images}: {where.relative_to(images)}/ holds no class "
                f"folders (expected <class>/* or <split>/<class>/*)"
            )
    return layout, ignored


def split(cfg: DataConfig, raw_dir: Path, seed: int, name: str) -> Prepared:
    """The images of download@<name>, or (offline) drawings made here from params and seed."""
    if read_json(raw_dir / paths.MANIFEST).get("source") != SYNTHETIC:
        return _split_images(cfg, raw_dir / paths.RAW_IMAGES, cfg.image_size, seed, name)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="nnlab-drawings-") as tmp:
        for i in range(cfg.synthetic_size):  # cats and dogs in turn: <class>/<cat|dog>.<i>.png
            png = Path(tmp, ANIMAL_CLASSES[i % 2], f"{ANIMAL_CLASSES[i % 2][:-1]}.{i}.png")
            png.parent.mkdir(exist_ok=True)
            Image.fromarray(draw_animal(rng, i % 2, cfg.synthetic_image_size)).save(png)
        return _split_images(cfg, Path(tmp), cfg.synthetic_image_size, seed, name)


def _split_images(cfg: DataConfig, images: Path, size: int, seed: int, name: str) -> Prepared:
    layout, ignored = find_layout(images)
    counts = label_counts(layout)
    labels, classes, left_out = pick_labels(counts, cfg, name, str(images), "class folder")
    plan, manifest = draw_plan(layout, labels, cfg, seed, name, "files")
    skipped = [{"file": str(f.relative_to(images)), "reason": "not an image file"} for f in ignored]
    modes: Counter = Counter()

    def load(path: Path) -> tuple[np.ndarray, str] | str:
        try:
            return load_image(path, (size, size), channels=cfg.channels)
        except ImageReadError as err:
            return str(err).removeprefix(f"{path}: ")

    def decode(quota: int, files: list[tuple[int, Path]]) -> dict[str, np.ndarray]:
        """The first ``quota`` readable files, straight into one preallocated uint8 array."""
        x = np.empty((quota, size, size, cfg.channels), dtype=np.uint8)
        y = np.empty(quota, dtype=np.int64)
        k = 0
        queue = iter(files)
        while k < quota and (batch := list(islice(queue, quota - k))):
            for (label, f), got in zip(batch, pool.map(load, [f for _, f in batch]), strict=True):
                if isinstance(got, str):
                    skipped.append({"file": str(f.relative_to(images)), "reason": got})
                else:
                    (x[k], mode), y[k] = got, label
                    modes[mode] += 1
                    k += 1
        return {"x": x[:k], "y": y[:k]}

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = {s: decode(*plan[s]) for s in paths.SPLITS}
    target = "L" if cfg.channels == 1 else "RGB"
    converted = {m: n for m, n in sorted(modes.items()) if m != target}
    if converted:
        said = ", ".join(f"{n} {m}" for m, n in converted.items())
        info(f"split@{name}: converted to {target}: {said} images")
    manifest |= {"image_size": size, "channels": cfg.channels, "modes": dict(sorted(modes.items()))}
    manifest |= {"converted_to": target, "converted_count": sum(converted.values())}
    manifest |= skipped_report(skipped, f"split@{name}", "unreadable or non-image files")
    manifest |= {"left_out": left_out} if left_out else {}
    got = {s: len(a["y"]) for s, a in arrays.items()}
    shortfall = {s: {"requested": plan[s][0], "got": n} for s, n in got.items() if n < plan[s][0]}
    if shortfall:
        manifest["shortfall"] = shortfall
        said = ", ".join(f"{s} ({v['got']} of {v['requested']})" for s, v in shortfall.items())
        warn(f"split@{name}: too few readable images to fill {said}; none taken from other splits")
    return Prepared("image", classes, arrays, {"image_size": size}, manifest)


def load_input(path: Path | bytes, spec) -> dict[str, np.ndarray]:
    """One image (a file or its bytes) as the model sees it."""
    channels, h, w = spec.input_shape
    return {"x": load_image(path, (h, w), channels=channels)[0]}


def spec(cfg: DataConfig, name: str, root: Path) -> DataSpec:
    """What split@<name> will produce from the images, from params alone."""

    def found(images: Path) -> list[str]:
        return sorted({c for cls in find_layout(images)[0].values() for c in cls})

    classes = planned_classes(cfg, name, root, found, list(ANIMAL_CLASSES))
    return DataSpec("image", (cfg.channels, cfg.image_size, cfg.image_size), tuple(classes))
