"""The lecture's augmentation: albumentations (the pipeline built from params.yaml's
catdog_cnn_aug) versus the equivalent torchvision.transforms.v2 pipeline, on the same uint8
150x150 images, in the same DataLoader setups (main process, and 2 workers).

torchvision equivalent: RandomAffine(degrees=40, translate=(0.2, 0.2), scale=(0.8, 1.2),
shear=11.3 along x, bilinear) + RandomHorizontalFlip; it has no 'replicate' border, so it fills
with black where albumentations repeats the edge (Keras' fill_mode='nearest').

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_catdog_augment.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_catdog_common import build_cache, photo_folder
from common import REPO, alternate, loading_samples_per_s, result
from nnlab.config import LoaderConfig, load_params
from nnlab.data.augment import build_augment
from nnlab.data.datamodule import ArrayDataset, make_loader


class TorchvisionAugment:
    """HWC uint8 -> HWC uint8 through torchvision.transforms.v2 (so ArrayDataset can use it)."""

    def __init__(self) -> None:
        from torchvision.transforms import InterpolationMode, v2

        self.tf = v2.Compose(
            [
                v2.RandomAffine(
                    degrees=40,
                    translate=(0.2, 0.2),
                    scale=(0.8, 1.2),
                    shear=(-11.3, 11.3),
                    interpolation=InterpolationMode.BILINEAR,
                ),
                v2.RandomHorizontalFlip(),
            ]
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        chw = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a writable copy
        return self.tf(chw).permute(1, 2, 0).numpy()


def per_image(transform, images: np.ndarray) -> float:
    t0 = time.perf_counter()
    for img in images:
        transform(img)
    return len(images) / (time.perf_counter() - t0)


def through_loader(transform, arrays, workers: int, epochs: int = 2) -> float:
    loader = make_loader(
        ArrayDataset(arrays, transform), 32, LoaderConfig(num_workers=workers), shuffle=True
    )
    return loading_samples_per_s(lambda: loader, epochs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    steps = load_params(REPO / "params.yaml").experiment("catdog_cnn_aug").augment
    albu, tv = build_augment(steps, seed=0, rank=0), TorchvisionAugment()
    with tempfile.TemporaryDirectory() as tmp:
        folder, what = photo_folder(Path(tmp), args.images)
        arrays = build_cache(folder, Path(tmp), args.size)
        images = np.asarray(arrays["x"])
        print(f"images: {what} at {args.size}x{args.size}; torch threads {torch.get_num_threads()}")
        per_image(albu, images[:16])  # warm-up: first calls build kernels and caches
        per_image(tv, images[:16])
        rows = [("per image, main process", lambda t: per_image(t, images))]
        rows += [
            (f"DataLoader, {w} workers", lambda t, w=w: through_loader(t, arrays, w))
            for w in (0, 2)
        ]
        for label, run in rows:
            got = alternate(
                {"albu": lambda run=run: run(albu), "tv": lambda run=run: run(tv)}, args.repeats
            )
            print(
                f"{label:26s}: albumentations {got['albu']:7.0f} img/s   torchvision.v2 "
                f"{got['tv']:7.0f} img/s"
            )
            result(
                f"augmentation, {label}, albumentations / torchvision (img/s)",
                got["albu"] / got["tv"],
            )


if __name__ == "__main__":
    main()
