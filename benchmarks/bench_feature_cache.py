"""Training a head on cached features versus running the frozen base every epoch.

Same images, same net (the ``vgg16`` builder: VGG16 or, offline, the EfficientNet-Lite0
fallback; ``--backbone vgg16 --random`` times VGG16 with random weights), same Classifier and
Trainer, one run:

* baseline: ``epochs`` epochs with every training and validation image through the frozen base;
* cached: ``features@`` once (nnlab.features.run_features), then the same epochs on its outputs.

Images: the first ``--images`` of ../shared/datasets/cats_and_dogs_small (train + validation,
resized to ``--size``), or seeded random images when that folder is absent.

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_feature_cache.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared/datasets/cats_and_dogs_small"


def load_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    if PHOTOS.is_dir():
        from nnlab.data.images import load_image

        files = [(f, label) for label, cls in enumerate(("cats", "dogs"))
                 for split in ("train", "validation")
                 for f in sorted((PHOTOS / split / cls).glob("*.jpg"))]
        picks = np.random.default_rng(seed).permutation(len(files))[:n]
        x = np.stack([load_image(files[i][0], (size, size)) for i in picks])
        return x, np.array([files[i][1] for i in picks]), f"{PHOTOS.name} photos"
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 2,
            "random images")


def write_split(root: Path, x: np.ndarray, y: np.ndarray, source: str) -> None:
    from nnlab.files import write_json

    folder = root / "data/split/cats_vs_dogs"
    folder.mkdir(parents=True)
    cut = int(len(x) * 0.75)
    for split, sl in (("train", slice(0, cut)), ("val", slice(cut, None)),
                      ("test", slice(cut, None))):
        np.save(folder / f"{split}_x.npy", x[sl])
        np.save(folder / f"{split}_y.npy", y[sl].astype(np.int64))
    write_json(folder / "meta.json", {"dataset": "cats_vs_dogs", "kind": "image",
                                      "input_shape": [3, *x.shape[1:3]],
                                      "classes": ["cats", "dogs"], "source": source})


def fit_seconds(params, name: str, root: Path, features: bool) -> float:
    import lightning as L

    from nnlab.classifier import Classifier
    from nnlab.data.datamodule import ArrayDataModule
    from nnlab.features import training_features

    exp = params.experiment(name)
    L.seed_everything(params.seed)
    dm = ArrayDataModule(exp.dataset, exp, params.trainer, params.seed, root)
    model = Classifier(model=exp.model, meta=dm.meta, model_options=exp.model_options,
                       optimizer=exp.optimizer, lr=exp.lr)
    dm.features_dir = training_features(name, exp, model.net, root) if features else None
    assert features == (dm.features_dir is not None)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=exp.epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=root)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--backbone", default="vgg16", choices=("vgg16", "efficientnet_lite0"))
    ap.add_argument("--random", action="store_true", help="random weights (no download)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from nnlab.config import parse_params
    from nnlab.features import run_features

    options = {"backbone": args.backbone, "source": "auto"}
    if args.random:
        options["weights"] = "none"
    params = parse_params({
        "seed": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "progress_bar": False},
        "data": {"cats_vs_dogs": {}},
        "experiments": {"head": {"dataset": "cats_vs_dogs", "model": "vgg16",
                                 "epochs": args.epochs, "batch_size": 20,
                                 "optimizer": "rmsprop", "lr": 1e-4,
                                 "model_options": options}},
    })
    x, y, source = load_images(args.images, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(root, x, y, source)
        t0 = time.perf_counter()
        manifest = run_features(params, "head", root)
        cache_s = time.perf_counter() - t0
        cached_s = fit_seconds(params, "head", root, features=True)
        images_s = fit_seconds(params, "head", root, features=False)
    n_train, n_val = manifest["counts"]["train"], manifest["counts"]["val"]
    print(f"\n{len(x)} {source} at {args.size}x{args.size} ({n_train} train, {n_val} val); "
          f"base: {manifest['pretrained']}; torch threads {torch.get_num_threads()} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), {args.epochs} epochs")
    print(f"{'':38}{'seconds':>10}")
    print(f"{'frozen base every epoch (baseline)':38}{images_s:>10.1f}")
    print(f"{'features stage, once (all 3 splits)':38}{cache_s:>10.1f}")
    print(f"{'head on cached features':38}{cached_s:>10.1f}")
    print(f"ratio, training epochs only:          {images_s / cached_s:>8.1f}x faster")
    print(f"ratio, including the features stage:  {images_s / (cache_s + cached_s):>8.1f}x faster")


if __name__ == "__main__":
    main()
