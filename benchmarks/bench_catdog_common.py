"""Shared by the cats-vs-dogs benchmarks: the same JPEGs as a class folder, as a uint8 cache
(what split@cats_vs_dogs stores) and as a throwaway project (download@ + split@ of that
folder), and the convnet4 experiment as params.yaml's catdog_cnn has it.

The images are real photos from ../shared/datasets/cats_and_dogs_small when present, else
synthetic drawings saved as JPEGs (the timings then still measure decode + resize).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from common import SHARED, make_params, prepare

PHOTOS = SHARED / "cats_and_dogs_small" / "train"
CLASSES = ("cats", "dogs")


def convnet4(batch_size: int = 32, channels_last: bool = True, **more: Any) -> dict[str, Any]:
    """catdog_cnn's experiment block (one epoch unless ``more`` says otherwise)."""
    return {
        "dataset": "cats_vs_dogs",
        "model": "convnet4",
        "epochs": 1,
        "batch_size": batch_size,
        "optimizer": "rmsprop",
        "lr": 1e-4,
        "channels_last": channels_last,
        **more,
    }


def photo_folder(tmp: Path, n: int) -> tuple[Path, str]:
    """An ImageFolder-style tree ``tmp/photos/<class>/*.jpg`` of ``n`` images (copies of the
    real photos: download@ never follows links; or synthetic JPEGs); returns (folder,
    description)."""
    folder = tmp / "photos"
    for label, cls in enumerate(CLASSES):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        if PHOTOS.is_dir():
            for f in sorted((PHOTOS / cls).iterdir())[: n // 2]:
                shutil.copyfile(f, folder / cls / f.name)
        else:
            from PIL import Image

            from nnlab.data.synthetic import draw_animal

            rng = np.random.default_rng(label)
            for i in range(n // 2):
                Image.fromarray(draw_animal(rng, label, 375)).save(
                    folder / cls / f"{i}.jpg", quality=90
                )
    what = "real photos (cats_and_dogs_small)" if PHOTOS.is_dir() else "synthetic JPEGs 375px"
    return folder, f"{n} {what}"


def build_cache(folder: Path, out: Path, size: int) -> dict[str, np.ndarray]:
    """What split@cats_vs_dogs stores: decoded once, resized, uint8 NHWC, memory-mapped."""
    from nnlab.data.images import load_image

    files = [
        (f, label) for label, cls in enumerate(CLASSES) for f in sorted((folder / cls).iterdir())
    ]
    x = np.stack([load_image(f, (size, size))[0] for f, _ in files])
    y = np.array([label for _, label in files], dtype=np.int64)
    np.save(out / "x.npy", x)
    np.save(out / "y.npy", y)
    return {"x": np.load(out / "x.npy", mmap_mode="r"), "y": np.load(out / "y.npy")}


def catdog_project(
    root: Path,
    n: int,
    size: int,
    experiments: dict[str, dict[str, Any]],
    features: dict[str, Any] | None = None,
    val: int = 32,
):
    """A project in ``root`` whose cats_vs_dogs split holds ``n`` photos at ``size`` px
    (``val`` for val and for test, the rest for training): (params, description)."""
    folder, what = photo_folder(root, n)
    data = {
        "cats_vs_dogs": {
            "kind": "image_folder",
            "source": "remote",
            "path": str(folder),
            "image_size": size,
            "split_sizes": [n - 2 * val, val, val],
        }
    }
    params = make_params(experiments, data, features)
    prepare(params, root)
    return params, what
