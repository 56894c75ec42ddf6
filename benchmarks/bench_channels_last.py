"""Channels-last versus contiguous (NCHW) training throughput of every conv net, through the
pipeline's Classifier (``experiments.<name>.channels_last``: the net and each scaled input
batch in channels-last memory format) and its training step (forward, loss, backward,
optimizer step): the baseline, contiguous, is measured in the same run on the same batches.

Nets (as params.yaml's experiments have them, on seeded random uint8 images: throughput does
not depend on the pixels):

* ``cnn_small``: mnist_cnn, 28x28x1, batch 64, RMSprop;
* ``convnet4``: catdog_cnn, ``--size`` px RGB, batch 32, RMSprop;
* ``vgg16``: catdog_vgg16_finetune's net at ``--ft-size`` px, batch 20 (the base frozen but
  for its last block, the head on top), once with VGG16 (random weights: the same work, no
  download) and once with EfficientNet-Lite0 (its packaged ImageNet weights), the offline
  stand-in.

Runs alternate (contiguous, channels-last, ...) over ``--repeats`` rounds; prints median
images/s and the ratio channels_last / contiguous per net (> 1: channels-last is faster here,
so the experiment should keep ``channels_last: true``).

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_channels_last.py
    (quick set: benchmarks/run_quick.sh)
"""

from __future__ import annotations

import argparse
from itertools import cycle

import torch

from common import (
    alternate,
    classifier,
    image_meta,
    make_params,
    quiet,
    result,
    train_samples_per_s,
)

FINETUNE = {"source": "bundled", "pool": "avg", "trainable_blocks": 1}


def nets(size: int, ft_size: int) -> dict[str, tuple[dict, tuple[int, int, int], int]]:
    """name -> (experiment block without channels_last, image shape, classes)."""
    rms = {"epochs": 1, "optimizer": "rmsprop", "lr": 1e-4}
    finetune = {"dataset": "cats_vs_dogs", "model": "vgg16", "batch_size": 20, **rms}
    return {
        "cnn_small": (
            {"dataset": "mnist", "model": "cnn_small", "batch_size": 64, **rms},
            (1, 28, 28),
            10,
        ),
        "convnet4": (
            {"dataset": "cats_vs_dogs", "model": "convnet4", "batch_size": 32, **rms},
            (3, size, size),
            2,
        ),
        "vgg16": (
            {**finetune, "model_options": {**FINETUNE, "backbone": "vgg16", "weights": "none"}},
            (3, ft_size, ft_size),
            2,
        ),
        "efficientnet_lite0": (
            {**finetune, "model_options": {**FINETUNE, "backbone": "efficientnet_lite0"}},
            (3, ft_size, ft_size),
            2,
        ),
    }


def random_batches(n: int, batch: int, shape: tuple[int, int, int], classes: int) -> list[dict]:
    """``n`` batches as the DataModule yields them: uint8 NCHW images, int64 labels."""
    g = torch.Generator().manual_seed(0)
    return [
        {
            "x": torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=g),
            "y": torch.randint(0, classes, (batch,), generator=g),
        }
        for _ in range(n)
    ]


def rates(
    name: str, block: dict, shape: tuple[int, int, int], classes: int, batches: int, repeats: int
) -> dict[bool, float]:
    """Median images/s of the net, contiguous (False) and channels-last (True)."""
    params = make_params(
        {f"{name}_{cl}": {**block, "channels_last": cl} for cl in (False, True)},
        {
            "mnist": {"kind": "mnist", "source": "bundled"},
            "cats_vs_dogs": {"kind": "image_folder", "source": "synthetic"},
        },
    )
    meta = image_meta(shape, classes)
    data = random_batches(batches + 2, block["batch_size"], shape, classes)
    models = {cl: classifier(params, f"{name}_{cl}", meta) for cl in (False, True)}
    for model in models.values():  # warm-up, untimed: oneDNN builds kernels per format
        train_samples_per_s(model, cycle(data), 1, warmup=1)
    return alternate(
        {
            cl: lambda cl=cl: train_samples_per_s(models[cl], cycle(data), batches)
            for cl in (False, True)
        },
        repeats,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=150, help="convnet4 images (px)")
    ap.add_argument("--ft-size", type=int, default=150, help="vgg16 fine-tuning images (px)")
    ap.add_argument("--batches", type=int, default=6, help="timed training batches per run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nets", default="cnn_small,convnet4,vgg16,efficientnet_lite0")
    args = ap.parse_args()
    quiet()
    table = nets(args.size, args.ft_size)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.batches} timed "
        f"batches after 2 warm-up, {args.repeats} rounds"
    )
    for name in args.nets.split(","):
        block, shape, classes = table[name]
        got = rates(name, block, shape, classes, args.batches, args.repeats)
        print(
            f"{name:20s} {'x'.join(map(str, shape))}: contiguous {got[False]:8.1f} img/s   "
            f"channels-last {got[True]:8.1f} img/s"
        )
        result(
            f"{name} {shape[1]}px training, channels_last / contiguous (img/s)",
            got[True] / got[False],
        )


if __name__ == "__main__":
    main()
