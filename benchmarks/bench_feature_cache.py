"""A head trained on a derived dataset (the features@ stage: the frozen base run ONCE over
every split, nnlab.stages.features.run) versus the baseline, the same head with the same
frozen base run on every training and validation image every epoch (the ``vgg16`` model with
trainable_blocks 0): same images, backbone, weights, head (Dense 256 ReLU, Dropout 0.5,
Dense 1), optimizer, epochs and Trainer, in one run.

Prints the seconds of each and two ratios baseline / cached: training epochs only, and
including the features stage (which also runs the test split).

Backbone: EfficientNet-Lite0 with its packaged ImageNet weights by default (offline);
``--backbone vgg16 --weights none`` times VGG16 (random weights: the same work, no download),
``--backbone vgg16 --source auto`` the real ImageNet VGG16 when it is cached (else the loud
fallback). Images: the first ``--images`` of ../shared/datasets/cats_and_dogs_small/train at
``--size`` px, or synthetic JPEGs when that folder is absent; 1/8 each for val and test.

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_feature_cache.py
    (quick set: benchmarks/run_quick.sh)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench_catdog_common import catdog_project
from common import alternate, fit, quiet, result

CACHE = "cats_vs_dogs_base"
HEAD = {"hidden": 256, "dropout": 0.5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1, help="fits of each, alternating")
    ap.add_argument(
        "--backbone", default="efficientnet_lite0", choices=("vgg16", "efficientnet_lite0")
    )
    ap.add_argument("--source", default="bundled", choices=("auto", "remote", "bundled"))
    ap.add_argument("--weights", default="imagenet", help="imagenet, none or a state dict file")
    ap.add_argument("--pool", default="avg", choices=("avg", "max", "flatten"))
    args = ap.parse_args()
    quiet()
    base = {
        "backbone": args.backbone,
        "source": args.source,
        "weights": args.weights,
        "pool": args.pool,
    }
    training = {"epochs": args.epochs, "batch_size": 20, "optimizer": "rmsprop", "lr": 2e-5}
    experiments = {
        "cached": {"dataset": CACHE, "model": "mlp", "model_options": HEAD, **training},
        "frozen": {
            "dataset": "cats_vs_dogs",
            "model": "vgg16",
            **training,
            "model_options": {**base, **HEAD, "trainable_blocks": 0},
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params, what = catdog_project(
            root,
            args.images,
            args.size,
            experiments,
            {CACHE: {"from": "cats_vs_dogs", **base}},
            val=args.images // 8,
        )
        from nnlab.stages.features import run as run_features

        t0 = time.perf_counter()
        manifest = run_features(params, CACHE, root)
        cache_s = time.perf_counter() - t0
        secs = alternate(
            {name: lambda name=name: fit(params, name, root)[0] for name in ("frozen", "cached")},
            args.repeats,
        )
    counts = manifest["counts"]
    print(
        f"\n{what} at {args.size}x{args.size} ({counts['train']} train, {counts['val']} val, "
        f"{counts['test']} test); base: {manifest['pretrained']}; "
        f"{torch.get_num_threads()} threads; {args.epochs} epochs"
    )
    print(f"{'':40}{'seconds':>10}")
    print(f"{'frozen base every epoch (baseline)':40}{secs['frozen']:>10.1f}")
    print(f"{'features stage, once (all 3 splits)':40}{cache_s:>10.1f}")
    print(f"{'head on the derived dataset':40}{secs['cached']:>10.1f}")
    result(
        f"{manifest['pretrained']['backbone']} base, {args.epochs} epochs: frozen every "
        f"epoch / head on features (training s)",
        secs["frozen"] / secs["cached"],
    )
    result(
        f"{manifest['pretrained']['backbone']} base, {args.epochs} epochs: frozen every "
        f"epoch / (features stage + head) (s)",
        secs["frozen"] / (cache_s + secs["cached"]),
    )


if __name__ == "__main__":
    main()
