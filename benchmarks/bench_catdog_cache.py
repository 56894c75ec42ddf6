"""convnet4 training throughput: the prepared uint8 cache (what split@cats_vs_dogs stores,
read through the pipeline's ArrayDataset and make_loader) versus the baseline, decoding and
resizing the JPEGs every epoch (torchvision ImageFolder + Resize); same images, batch size,
threads and model (catdog_cnn: channels-last, as params.yaml has it).

Runs alternate (folder, cache, folder, cache...) so background load hits both alike; medians
are printed with the ratios cache/folder, for loading alone and for training (the cache must
win). Channels-last versus contiguous: bench_channels_last.py.

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_catdog_cache.py
    (quick set: benchmarks/run_quick.sh)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench_catdog_common import build_cache, convnet4, photo_folder
from common import (
    alternate,
    classifier,
    endless,
    image_meta,
    loading_samples_per_s,
    make_params,
    quiet,
    result,
    train_samples_per_s,
)
from nnlab.config import LoaderConfig
from nnlab.data.datamodule import ArrayDataset, make_loader


def folder_batches(folder: Path, size: int, batch: int):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    tf = v2.Compose([v2.Resize((size, size)), v2.PILToTensor()])  # uint8, as the cache
    for x, y in DataLoader(ImageFolder(str(folder), transform=tf), batch_size=batch, shuffle=True):
        yield {"x": x, "y": y}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=8, help="timed training batches per run")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    quiet()
    params = make_params({"catdog_cnn": convnet4(args.batch_size)})
    meta = image_meta((3, args.size, args.size))
    with tempfile.TemporaryDirectory() as tmp:
        folder, what = photo_folder(Path(tmp), args.images)
        t0 = time.perf_counter()
        arrays = build_cache(folder, Path(tmp), args.size)
        print(
            f"images: {what}; {args.size}x{args.size}, batch {args.batch_size}, "
            f"{torch.get_num_threads()} threads, num_workers 0"
        )
        print(f"building the cache (decode + resize once): {time.perf_counter() - t0:.1f} s")

        def fold():
            return folder_batches(folder, args.size, args.batch_size)

        def cache():
            return make_loader(ArrayDataset(arrays), args.batch_size, LoaderConfig(), shuffle=True)

        load = alternate(
            {
                "folder": lambda: loading_samples_per_s(fold),
                "cache": lambda: loading_samples_per_s(cache),
            },
            args.repeats,
        )
        print(
            f"loading only     : folder {load['folder']:8.1f} img/s   cache "
            f"{load['cache']:8.1f} img/s"
        )
        result("loading, cache / folder (img/s)", load["cache"] / load["folder"])

        def training(batches) -> float:
            return train_samples_per_s(
                classifier(params, "catdog_cnn", meta), endless(batches), args.batches
            )

        training(cache)  # warm-up, untimed: the first steps build oneDNN kernels
        train = alternate(
            {"folder": lambda: training(fold), "cache": lambda: training(cache)}, args.repeats
        )
        print(
            f"convnet4 training: folder {train['folder']:8.1f} img/s   cache "
            f"{train['cache']:8.1f} img/s"
        )
        result("convnet4 training, cache / folder (img/s)", train["cache"] / train["folder"])


if __name__ == "__main__":
    main()
