"""Cats vs dogs: photos in class folders -> uint8 arrays at ``image_size``.

Where the images come from (download stage, ``data/raw/cats_vs_dogs/images/``):

* ``path:`` a local folder, zip or tar(.gz/.bz2/.xz) (recognised by content) laid out as
  ``<split>/<class>/*`` or ``<class>/*`` (class names are the folder names). Archives are
  checked member by member before anything is extracted (no links or special files, size and
  ratio caps: :mod:`nnlab.data.sources`); a folder is copied without following symlinks
  (skipped and counted in the manifest). A missing ``path:`` is an error under every source;
* else the ``mirrors:`` (default: the public ``cats_and_dogs_filtered.zip``, 2,000 training and
  1,000 validation images). Append ``#sha256=<64 hex>`` (or ``#md5=<32 hex>``) to a mirror URL
  to pin its checksum (any other fragment is an error); without one the archive is still
  checked (length, zip CRCs) and its sha256 recorded. A mirror that fails in any way (network,
  checksum, damaged or unsafe archive) passes the turn to the next one;
* with ``source: auto`` and no mirror reachable, or ``source: synthetic``: drawn cartoon cats
  and dogs (seeded; random position, size, rotation, colours, clutter), loudly labelled.

How they are split (split stage): every image used is decoded once (Pillow, any mode -> RGB),
resized to ``image_size`` and stored uint8; unreadable files are skipped and listed.

* ``train/``, ``validation/`` and ``test/`` folders: kept as they are;
* ``train/`` and ``validation/`` only (the remote default, ../shared/datasets/cats_and_dogs_small):
  ``train`` is kept and ``validation`` is halved, stratified, into ``val`` and ``test``, so the
  training set stays the one the folder's authors chose and no validation image leaks into
  training (remote default: 2000/500/500; cats_and_dogs_small: 2000/250/250);
* anything else (``<class>/*``, the full Kaggle set): pooled, then ``split_sizes``
  (train/val/test, lecture: 2000/1000/1000) drawn stratified and seeded, scaled down in
  proportion when there are fewer images. Only the images drawn are decoded; a file that fails
  is replaced by a spare file of the same class drawn for the SAME split (each split gets its
  quota plus its share of the spare files), so one split's bad files never shrink another.
  A split left short says so in the console and in the manifest (``shortfall``); an empty one
  is refused.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np

from nnlab.config import DataConfig
from nnlab.data.images import IMAGE_SUFFIXES, ImageReadError, load_image
from nnlab.data.prepare import Prepared
from nnlab.data.sources import (
    ArchiveError,
    Limits,
    copy_tree,
    fetch,
    local_path,
    parse_mirror,
    safe_extract,
)
from nnlab.data.synthetic import ANIMAL_CLASSES, write_animals
from nnlab.data.synthetic import draw_animal as draw_animal  # re-exported for old callers
from nnlab.files import file_digest, read_json
from nnlab.log import DownloadError, info, with_fallback
from nnlab.spec import DataSpec

IMAGES = "images"  # under data/raw/cats_vs_dogs/
SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "test": "test"}
SYNTHETIC = "synthetic cartoon cats and dogs"
_IGNORED_DIRS = ("__MACOSX",)


# ----------------------------------------------------------------------------- download


def _remote(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    """The first mirror whose archive downloads, verifies and extracts; a failure of any
    kind (network, checksum, damaged or unsafe archive) moves on to the next mirror."""
    if not cfg.mirrors:
        raise DownloadError("data.cats_vs_dogs.mirrors is empty and no path: is set")
    pinned = [parse_mirror(entry) for entry in cfg.mirrors]  # a bad pin: ValueError, no fallback
    failures = []
    for url, checksum in pinned:
        archive = out_dir / (PurePosixPath(urlparse(url).path).name or "download")
        try:
            got = fetch([url], archive, checksum, timeout=cfg.timeout, retries=cfg.retries,
                        total_timeout=cfg.total_timeout)
            safe_extract(archive, out_dir / IMAGES, limits=Limits.of(cfg), shown=url)
        except (DownloadError, ArchiveError) as err:
            failures.append(str(err))
            continue
        finally:
            archive.unlink(missing_ok=True)
        if checksum is None:
            info(f"cats_vs_dogs: {url} has no pinned checksum; got {got['checksum']} "
                 f"(append #{got['checksum'].replace(':', '=')} to the mirror to pin it)")
        return {"url": url, "checksum": got["checksum"], "pinned": checksum is not None,
                **_describe(out_dir / IMAGES, url)}
    raise DownloadError("; ".join(failures))


def _from_path(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    src = local_path(cfg.path, "data.cats_vs_dogs.path")
    manifest: dict[str, Any] = {"path": str(src.resolve())}
    if src.is_dir():
        manifest.update(copy_tree(src, out_dir / IMAGES))
    elif src.is_file():
        shown = f"data.cats_vs_dogs.path: {src}"
        try:
            safe_extract(src, out_dir / IMAGES, limits=Limits.of(cfg), shown=shown)
        except ArchiveError as err:
            if "neither a zip nor a tar" in str(err):
                raise ArchiveError(f"{shown} is neither a folder nor a zip/tar archive") from None
            raise
        manifest["checksum"] = "sha256:" + file_digest(src)
    else:
        raise ValueError(f"data.cats_vs_dogs.path: {src} is neither a folder nor a file")
    return {**manifest, **_describe(out_dir / IMAGES, f"data.cats_vs_dogs.path {src}")}


def download(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    # A `path:` that is missing or malformed is an error under every source, never a fallback.
    if cfg.path:
        local_path(cfg.path, "data.cats_vs_dogs.path")
    return with_fallback(
        cfg.source,
        (lambda: _from_path(cfg, out_dir)) if cfg.path else (lambda: _remote(cfg, out_dir)),
        lambda: {"generator": "nnlab.data.synthetic.draw_animal",
                 "drawn_by": "split@cats_vs_dogs (synthetic_size, synthetic_image_size, seed)"},
        dataset="cats_vs_dogs",
        fallback_name=SYNTHETIC,
    )


# ----------------------------------------------------------------------------- layout


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name not in _IGNORED_DIRS


def _image_root(folder: Path) -> Path:
    """Descend through wrapper folders (``cats_and_dogs_filtered/``) to the layout's root."""
    while True:
        entries = [p for p in folder.iterdir() if _visible(p)]
        if len(entries) == 1 and entries[0].is_dir() and any(
            p.is_dir() and _visible(p) for p in entries[0].iterdir()
        ):
            folder = entries[0]
        else:
            return folder


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def find_layout(
    images: Path, shown: str | None = None
) -> tuple[dict[str, dict[str, list[Path]]], list[Path]]:
    """({split or "pool": {class: [image files]}}, [ignored files]); raises on a bad layout,
    naming the folder as ``shown`` (where the user put it) when given."""
    if not images.is_dir():
        raise ValueError(f"{images}: no images folder; rerun download@cats_vs_dogs")
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
            raise ValueError(
                f"{shown}: {where.relative_to(images)}/ should hold one folder per class (at "
                f"least two, e.g. cats/ dogs/), found {sorted(layout[split]) or 'none'}"
            )
    classes = {s: sorted(c) for s, c in layout.items()}
    if len({tuple(c) for c in classes.values()}) > 1:
        raise ValueError(f"{shown}: the splits have different class folders: {classes}")
    return layout, ignored


def _describe(images: Path, shown: str) -> dict[str, Any]:
    layout, ignored = find_layout(images, shown)
    return {
        "layout": sorted(layout),
        "files": {s: {c: len(f) for c, f in cls.items()} for s, cls in layout.items()},
        "ignored_files": len(ignored),
    }


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


def _plan(
    layout: dict[str, dict[str, list[Path]]], cfg: DataConfig, seed: int
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
        for s in ("train", "val", "test"):
            n = sum(len(f) for f in layout[s].values())
            plan.update(share(layout[s], {s: math.floor(n * cap)}))
        return plan, "kept the folder's train/validation/test split"
    if set(layout) == {"train", "val"}:
        n_train = sum(len(f) for f in layout["train"].values())
        n_val = math.floor(sum(len(f) for f in layout["val"].values()) * cap)
        return {
            **share(layout["train"], {"train": math.floor(n_train * cap)}),
            **share(layout["val"], {"val": n_val - n_val // 2, "test": n_val // 2}),
        }, "kept train; halved validation (stratified) into val and test"
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
    return share(pool, dict(zip(("train", "val", "test"), want, strict=True))), how


def _try_load(path: Path, size: int) -> np.ndarray | str:
    try:
        return load_image(path, (size, size), channels=3)
    except ImageReadError as err:
        return str(err).removeprefix(f"{path}: ")


def _decode(
    entries: list[tuple[int, int, Iterator[Path]]], size: int, pool: ThreadPoolExecutor,
    skipped: list[dict[str, str]], base: Path,
) -> dict[str, np.ndarray]:
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
    if read_json(raw_dir / "manifest.json").get("source") != SYNTHETIC:
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
        arrays = {s: _decode(plan[s], size, pool, skipped, images)
                  for s in ("train", "val", "test")}
    for s, a in arrays.items():
        if len(a["y"]) == 0:
            raise ValueError(f"split@cats_vs_dogs: the {s} split would be empty: no readable "
                             f"images drawn for it ({how}); raise max_samples or add images")
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
