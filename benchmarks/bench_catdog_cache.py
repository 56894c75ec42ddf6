"""convnet4 training throughput: the prepared uint8 cache (what split@cats_vs_dogs stores)
versus decoding and resizing the JPEGs every epoch (torchvision ImageFolder + Resize), same
images, batch size, threads and model; plus channels-last versus contiguous on the cache.

Runs alternate (folder, cache, folder, cache...) so background load hits both alike; medians
are printed with the ratio cache/folder (the cache must win).

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_catdog_cache.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench_catdog_common import (
    build_cache,
    classifier,
    median,
    photo_folder,
    train_images_per_s,
)
from nnlab.data.datamodule import ArrayDataset, _whole_batch


def folder_loader(folder: Path, size: int, batch: int) -> DataLoader:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    tf = v2.Compose([v2.Resize((size, size)), v2.PILToTensor()])  # uint8, as the cache
    return DataLoader(ImageFolder(str(folder), transform=tf), batch_size=batch, shuffle=True)


def as_dicts(loader):
    for x, y in loader:
        yield {"x": x, "y": y}


def cache_loader(arrays, batch: int) -> DataLoader:
    return DataLoader(ArrayDataset(arrays), batch_size=batch, shuffle=True,
                      collate_fn=_whole_batch)


def loader_only(batches) -> float:
    t0, n = time.perf_counter(), 0
    for b in batches:
        n += len(b["y"])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=8, help="timed training batches per run")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, what = photo_folder(Path(tmp), args.images)
        t0 = time.perf_counter()
        arrays = build_cache(folder, Path(tmp), args.size)
        print(f"images: {what}; {args.size}x{args.size}, batch {args.batch_size}, "
              f"{torch.get_num_threads()} threads, num_workers 0")
        print(f"building the cache (decode + resize once): {time.perf_counter() - t0:.1f} s")

        def fold():
            return as_dicts(folder_loader(folder, args.size, args.batch_size))

        def cache():
            return cache_loader(arrays, args.batch_size)

        lf = [loader_only(fold()) for _ in range(args.repeats)]
        lc = [loader_only(cache()) for _ in range(args.repeats)]
        print(f"loading only     : folder {median(lf):8.1f} img/s   cache {median(lc):8.1f} "
              f"img/s   ratio cache/folder {median(lc) / median(lf):.1f}x")

        for cl in (True, False):  # warm-up, untimed: first steps build oneDNN kernels
            train_images_per_s(classifier(args.size, cl), cache(), 2)
        tf_, tc = [], []
        for _ in range(args.repeats):
            tf_.append(train_images_per_s(classifier(args.size, True), fold(), args.batches))
            tc.append(train_images_per_s(classifier(args.size, True), cache(), args.batches))
        print(f"convnet4 training: folder {median(tf_):8.1f} img/s   cache {median(tc):8.1f} "
              f"img/s   ratio cache/folder {median(tc) / median(tf_):.2f}x  (channels_last)")

        cf = [train_images_per_s(classifier(args.size, False), cache(), args.batches)
              for _ in range(args.repeats)]
        print(f"memory format    : contiguous {median(cf):6.1f} img/s   channels_last "
              f"{median(tc):6.1f} img/s   ratio {median(tc) / median(cf):.2f}x  (cache)")


if __name__ == "__main__":
    main()
