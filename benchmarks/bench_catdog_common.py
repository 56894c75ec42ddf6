"""Shared by the bench_catdog_* scripts: the same JPEGs as a folder and as a uint8 cache,
and a timed convnet4 training loop that goes through the Classifier like the pipeline does.

The images are real photos from ../shared/datasets/cats_and_dogs_small when present, else
synthetic drawings saved as JPEGs (the timing then still measures decode + resize).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from nnlab.classifier import Classifier

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets" / "cats_and_dogs_small" / "train"
CLASSES = ("cats", "dogs")


def photo_folder(tmp: Path, n: int) -> tuple[Path, str]:
    """An ImageFolder-style tree ``tmp/photos/<class>/*.jpg`` of ``n`` images (links to the
    real photos, or synthetic JPEGs); returns (folder, description)."""
    folder = tmp / "photos"
    for label, cls in enumerate(CLASSES):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        if SHARED.is_dir():
            for f in sorted((SHARED / cls).iterdir())[: n // 2]:
                os.symlink(f, folder / cls / f.name)
        else:
            from PIL import Image

            from nnlab.data.cats_vs_dogs import draw_animal

            rng = np.random.default_rng(label)
            for i in range(n // 2):
                Image.fromarray(draw_animal(rng, label, 375)).save(
                    folder / cls / f"{i}.jpg", quality=90)
    what = "real photos (cats_and_dogs_small)" if SHARED.is_dir() else "synthetic JPEGs 375px"
    return folder, f"{n} {what}"


def files_of(folder: Path) -> list[tuple[Path, int]]:
    return [(f, label) for label, cls in enumerate(CLASSES)
            for f in sorted((folder / cls).iterdir())]


def build_cache(folder: Path, out: Path, size: int) -> dict[str, np.ndarray]:
    """What split@cats_vs_dogs stores: decoded once, resized, uint8 NHWC, memory-mapped."""
    from nnlab.data.images import load_image

    files = files_of(folder)
    x = np.stack([load_image(f, (size, size)) for f, _ in files])
    y = np.array([label for _, label in files], dtype=np.int64)
    np.save(out / "x.npy", x)
    np.save(out / "y.npy", y)
    return {"x": np.load(out / "x.npy", mmap_mode="r"), "y": np.load(out / "y.npy")}


def classifier(size: int, channels_last: bool) -> Classifier:
    torch.manual_seed(0)
    meta = {"kind": "image", "input_shape": [3, size, size], "classes": list(CLASSES)}
    return Classifier(model="convnet4", meta=meta, optimizer="rmsprop", lr=1e-4,
                      channels_last=channels_last)


def train_images_per_s(model: Classifier, batches: Iterable[dict], max_batches: int,
                       warmup: int = 2) -> float:
    """Images/s of forward + backward + step over the batches (after ``warmup`` batches)."""
    opt = model.configure_optimizers()
    model.train()
    n, t0 = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            n, t0 = 0, time.perf_counter()
        loss = model.loss(model(*model.inputs(batch)), batch["y"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(batch["y"])
        if i + 1 >= max_batches + warmup:
            break
    return n / (time.perf_counter() - t0)


def median(values: list[float]) -> float:
    return float(np.median(values))
