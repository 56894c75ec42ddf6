"""Cats vs dogs, read as an image folder: ``<split>/<class>/*`` or ``<class>/*`` photos (class
names are the folder names) -> uint8 arrays at ``image_size``.

The photos come from ``path:`` (a folder, or an archive) or the mirrors' archive; offline,
seeded cartoon drawings (:mod:`nnlab.data.synthetic`) stand in. ``train/``, ``validation/`` and
``test/`` folders are kept; ``train/`` and ``validation/`` alone keep train and halve
validation (stratified) into val and test; anything else is pooled and ``split_sizes`` (else
the fractions) drawn stratified and seeded. An unreadable image is skipped, listed, and
replaced by a spare file of its class from the same split; a split left short says so.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import paths
from nnlab.config import DataConfig
from nnlab.data.images import IMAGE_SUFFIXES, ImageReadError, load_image
from nnlab.data.prepare import Prepared
from nnlab.data.sources import Limits, download_raw, unpack_tree
from nnlab.data.synthetic import ANIMAL_CLASSES, write_animals
from nnlab.files import read_json
from nnlab.log import info
from nnlab.spec import DataSpec

IMAGES = "images"  # under data/raw/cats_vs_dogs/
ARCHIVE = "archive"  # a mirror's download, deleted once extracted
SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "test": "test"}
SYNTHETIC = "synthetic cartoon cats and dogs"
_IGNORED_DIRS = ("__MACOSX",)


def download(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    def store(src: Path, shown: str) -> dict[str, Any]:
        skipped = unpack_tree(src, out_dir / IMAGES, shown, Limits.of(cfg))
        return {**skipped, **_describe(out_dir / IMAGES, shown)}

    drawn = {"generator": "nnlab.data.synthetic.draw_animal",
             "drawn_by": "split@cats_vs_dogs (synthetic_size, synthetic_image_size, seed)"}
    return download_raw(cfg, out_dir, "cats_vs_dogs", store, {ARCHIVE: None}, lambda: drawn,
                        SYNTHETIC)


# ----------------------------------------------------------------------------- layout


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name not in _IGNORED_DIRS


def _image_root(folder: Path) -> Path:
    """Descend through wrapper folders (``cats_and_dogs_filtered/``) to the layout's root."""
    while True:
        entries = [p for p in folder.iterdir() if _visible(p)]
        if not (len(entries) == 1 and entries[0].is_dir()
                and any(p.is_dir() and _visible(p) for p in entries[0].iterdir())):
            return folder
        folder = entries[0]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def find_layout(images: Path, shown: str | None = None
                ) -> tuple[dict[str, dict[str, list[Path]]], list[Path]]:
    """({split or "pool": {class: [image files]}}, [ignored files]); raises on a bad layout,
    naming the folder as ``shown`` (where the user put it) when given."""
    if not images.is_dir():
        raise ValueError(f"{images}: no images folder; rerun the download stage")
    root = _image_root(images)
    shown = shown or str(images)
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    ignored = [p for p in root.iterdir() if p.is_file()]
    by_split = {SPLIT_NAMES[d.name.lower()]: d for d in dirs if d.name.lower() in SPLIT_NAMES}
    if "train" in by_split:
        tops = {s: sorted(c for c in d.iterdir() if c.is_dir() and _visible(c))
                for s, d in by_split.items()}
        ignored += [p for d in dirs if d not in by_split.values() for p in _files(d)]
    else:
        tops = {"pool": dirs}
    layout: dict[str, dict[str, list[Path]]] = {}
    for split, class_dirs in tops.items():
        layout[split] = {}
        for c in class_dirs:
            files = _files(c)
            layout[split][c.name] = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            ignored += [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
        if len(layout[split]) < 2:
            where = root / ("" if split == "pool" else by_split[split].name)
            raise ValueError(f"{shown}: {where.relative_to(images)}/ should hold one folder per "
                             f"class (at least two, e.g. cats/ dogs/), found "
                             f"{sorted(layout[split]) or 'none'}")
    classes = {s: sorted(c) for s, c in layout.items()}
    if len({tuple(c) for c in classes.values()}) > 1:
        raise ValueError(f"{shown}: the splits have different class folders: {classes}")
    return layout, ignored


def _describe(images: Path, shown: str) -> dict[str, Any]:
    layout, ignored = find_layout(images, shown)
    return {"layout": sorted(layout), "ignored_files": len(ignored),
            "counts": {s: {c: len(f) for c, f in cls.items()} for s, cls in layout.items()}}


# ----------------------------------------------------------------------------- split


def _largest_remainder(exact: np.ndarray, total: int, deficit: np.ndarray) -> np.ndarray:
    """Integers summing to ``total`` near ``exact``; leftovers go where ``deficit`` is largest."""
    out = np.floor(exact).astype(int)
    for i in np.argsort(-(deficit - out), kind="stable")[: total - out.sum()]:
        out[i] += 1
    return out


def _quotas(sizes: list[int], class_sizes: list[int]) -> list[list[int]]:
    """Per split, per class counts: each class contributes in proportion to its size and is
    cut at the split proportions; rounding keeps every split within one of its size."""
    want, total = sum(sizes), sum(class_sizes)
    cls = np.asarray(class_sizes)
    used = _largest_remainder(cls * want / total, want, cls * want / total)
    share = np.asarray(sizes) / want
    out = np.zeros((len(sizes), len(cls)), dtype=int)
    for c, m in enumerate(used):
        expected = share * used[: c + 1].sum()  # what each split should hold so far
        out[:, c] = _largest_remainder(share * m, int(m), expected - out[:, :c].sum(1))
    return out.tolist()


def _plan(layout: dict[str, dict[str, list[Path]]], cfg: DataConfig, seed: int
          ) -> tuple[dict[str, list[tuple[int, int, Iterator[Path]]]], str]:
    """Per split: (label, how many images, where to draw them from) for each class."""
    rng = np.random.default_rng(seed)
    classes = sorted(next(iter(layout.values())))

    def share(pool: dict[str, list[Path]], sizes: dict[str, int]):
        """Each split gets its own files: its quota plus a share of the spare files (in
        proportion to the quota) to replace unreadable ones, so no split eats another's."""
        counts = [len(pool[c]) for c in classes]
        quotas = np.asarray(_quotas(list(sizes.values()), counts))  # (split, class)
        plan: dict[str, list] = {s: [] for s in sizes}
        for k, c in enumerate(classes):
            files = [pool[c][i] for i in rng.permutation(len(pool[c]))]
            q = quotas[:, k]
            spare = len(files) - int(q.sum())
            extra = (_largest_remainder(spare * q / q.sum(), spare, spare * q / q.sum())
                     if q.sum() else np.zeros_like(q))
            ends = np.cumsum(q + extra)
            for s, quota, start, end in zip(sizes, q, ends - q - extra, ends, strict=True):
                plan[s].append((k, int(quota), iter(files[start:end])))
        return plan

    total = sum(len(f) for split in layout.values() for f in split.values())
    cap = min(1.0, cfg.max_samples / total) if cfg.max_samples else 1.0
    if set(layout) >= {"train", "val", "test"}:
        plan = {}
        for s in paths.SPLITS:
            n = sum(len(f) for f in layout[s].values())
            plan.update(share(layout[s], {s: math.floor(n * cap)}))
        return plan, "kept the folder's train/validation/test split"
    if set(layout) == {"train", "val"}:
        n_train = sum(len(f) for f in layout["train"].values())
        n_val = math.floor(sum(len(f) for f in layout["val"].values()) * cap)
        plan = {**share(layout["train"], {"train": math.floor(n_train * cap)}),
                **share(layout["val"], {"val": n_val - n_val // 2, "test": n_val // 2})}
        return plan, "kept train; halved validation (stratified) into val and test"
    pool: dict[str, list[Path]] = {c: [] for c in classes}
    for split in layout.values():
        for c, files in split.items():
            pool[c] += files
    n = math.floor(total * cap)
    if cfg.split_sizes:
        want = list(cfg.split_sizes)
        if sum(want) > n:  # fewer images than asked for: same proportions
            want = [math.floor(w * n / sum(want)) for w in want]
    else:
        want = [0, round(n * cfg.val_fraction), round(n * cfg.test_fraction)]
        want[0] = n - want[1] - want[2]
    how = f"pooled {total} files; drew train/val/test = {want} (stratified, seed {seed})"
    return share(pool, dict(zip(paths.SPLITS, want, strict=True))), how


def _try_load(path: Path, size: int) -> np.ndarray | str:
    try:
        return load_image(path, (size, size), channels=3)
    except ImageReadError as err:
        return str(err).removeprefix(f"{path}: ")


def _decode(entries: list[tuple[int, int, Iterator[Path]]], size: int, pool: ThreadPoolExecutor,
            skipped: list[dict[str, str]], base: Path) -> dict[str, np.ndarray]:
    """Decode each class's quota straight into one preallocated uint8 array."""
    x = np.empty((sum(q for _, q, _ in entries), size, size, 3), dtype=np.uint8)
    y = np.empty(len(x), dtype=np.int64)
    k = 0
    for label, quota, queue in entries:
        got = 0
        while got < quota:
            batch = [f for _, f in zip(range(quota - got), queue, strict=False)]
            if not batch:
                break  # the class ran out of readable files
            for f, result in zip(batch, pool.map(lambda p: _try_load(p, size), batch),
                                 strict=True):
                if isinstance(result, str):
                    skipped.append({"file": str(f.relative_to(base)), "reason": result})
                else:
                    x[k], y[k] = result, label
                    k += 1
                    got += 1
    return {"x": x[:k], "y": y[:k]}


def split(cfg: DataConfig, raw_dir: Path, seed: int) -> Prepared:
    """The photos of download@cats_vs_dogs, or (offline substitute) drawings made here from
    ``synthetic_size``, ``synthetic_image_size`` and the seed, which this stage depends on."""
    if read_json(raw_dir / paths.MANIFEST).get("source") != SYNTHETIC:
        return _split_images(cfg, raw_dir / IMAGES, cfg.image_size, seed)
    with tempfile.TemporaryDirectory(prefix="nnlab-drawings-") as tmp:
        write_animals(Path(tmp), cfg.synthetic_size, cfg.synthetic_image_size, seed)
        return _split_images(cfg, Path(tmp), cfg.synthetic_image_size, seed)


def _split_images(cfg: DataConfig, images: Path, size: int, seed: int) -> Prepared:
    layout, ignored = find_layout(images)
    classes = sorted(next(iter(layout.values())))
    plan, how = _plan(layout, cfg, seed)
    skipped = [{"file": str(f.relative_to(images)), "reason": "not an image file"}
               for f in ignored]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = {s: _decode(plan[s], size, pool, skipped, images) for s in paths.SPLITS}
    if skipped:
        info(f"split@cats_vs_dogs: skipped {len(skipped)} unreadable or non-image files "
             f"(listed in the manifest), e.g. {skipped[0]['file']}: {skipped[0]['reason']}")
    manifest = {"image_size": size, "split": how, "skipped_count": len(skipped),
                "skipped": skipped}
    requested = {s: sum(q for _, q, _ in plan[s]) for s in arrays}
    shortfall = {s: {"requested": requested[s], "got": len(a["y"])}
                 for s, a in arrays.items() if len(a["y"]) < requested[s]}
    if shortfall:
        manifest["shortfall"] = shortfall
        info("split@cats_vs_dogs: too few readable images to fill "
             + ", ".join(f"{s} ({v['got']} of {v['requested']})" for s, v in shortfall.items())
             + "; replacements come only from the same split's files")
    return Prepared(kind="image", classes=classes, arrays=arrays, meta={"image_size": size},
                    manifest=manifest)


def load_input(path: Path | bytes, spec) -> dict[str, np.ndarray]:
    """One photo (a file or its bytes) as the model sees it: RGB, at the training size."""
    _, h, w = spec.input_shape
    return {"x": load_image(path, (h, w), channels=3)}


def spec(cfg: DataConfig) -> DataSpec:
    """What split@cats_vs_dogs will produce from photos, from params alone (class names
    are the folders' own once the data is there)."""
    return DataSpec("image", (3, cfg.image_size, cfg.image_size), ANIMAL_CLASSES)
