"""Training throughput: the pipeline (ArrayDataModule + Classifier + lightning.Trainer) versus
a bare PyTorch loop over the same tensors: same net, batches, optimizer, threads and epochs.

Three cases: mnist_cnn (cnn_small on the bundled MNIST sample), convnet4 without augmentation
(synthetic cats vs dogs, --image-size px) and the GRU (synthetic reviews, padded batches),
the conv nets in channels-last as params.yaml has them (--contiguous: not). Two pipelines:
"pipeline", a bare Trainer (no progress bar, callbacks or logger), and "stage", with the
train stage's callbacks (thread sizing, checkpoints, History, Timer) and Trainer arguments;
MLflow is left out (it logs per epoch only). Runs alternate (bare, pipeline, stage, bare, ...)
so background load hits them alike; the figures are the median ratios to bare of samples per
second (target >= 0.95). Channels-last versus contiguous: bench_channels_last.py.

    python benchmarks/bench_train_loop.py [--epochs 2] [--repeats 3] [--cases mnist_cnn,gru]
    (quick set: benchmarks/run_quick.sh)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from common import classifier, fit, make_params, prepare, quiet, result
from nnlab.classifier import scale_inputs
from nnlab.data.datamodule import ArrayDataset
from nnlab.data.prepare import load_arrays, load_meta

CASES = {
    "mnist_cnn": {
        "dataset": "mnist",
        "model": "cnn_small",
        "batch_size": 64,
        "optimizer": "rmsprop",
    },
    "convnet4": {
        "dataset": "cats_vs_dogs",
        "model": "convnet4",
        "batch_size": 32,
        "optimizer": "rmsprop",
    },
    "gru": {"dataset": "imdb", "model": "gru", "batch_size": 64, "optimizer": "adam"},
}


def project(root: Path, image_size: int, channels_last: bool, samples: int):
    params = make_params(
        {
            name: {**case, "epochs": 1, "channels_last": channels_last and name != "gru"}
            for name, case in CASES.items()
        },
        {
            "mnist": {"kind": "mnist", "source": "bundled", "max_samples": samples},
            "cats_vs_dogs": {
                "kind": "image_folder",
                "source": "synthetic",
                "synthetic_size": min(samples, 800),
                "synthetic_image_size": image_size,
            },
            "imdb": {"kind": "text_folder", "source": "synthetic", "synthetic_size": samples},
        },
    )
    prepare(params, root)
    return params


def pipeline(params, name: str, root: Path, epochs: int, stage: bool = False) -> float:
    seconds, samples = fit(params, name, root, epochs, validate=False, stage=stage)
    return samples / seconds


def bare(params, name: str, root: Path, epochs: int) -> float:
    """The same net and optimizer over whole tensors, indexed per batch: no Lightning."""
    exp = params.experiment(name)
    L.seed_everything(0, verbose=False)
    arrays = {k: np.array(v) for k, v in load_arrays(exp.dataset, "train", root).items()}
    tensors = ArrayDataset(arrays).__getitems__(list(range(len(arrays["y"]))))
    meta_model = classifier(params, name, load_meta(exp.dataset, root))
    net, binary = meta_model.net, meta_model.binary
    opt = meta_model.configure_optimizers()
    net.train()
    n = len(tensors["y"])
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(n).split(exp.batch_size):
            batch = {k: v[idx] for k, v in tensors.items()}
            logits, y = net(*scale_inputs(batch, exp.channels_last)), batch["y"]
            if binary:
                loss = F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.float())
            else:
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return n * epochs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument(
        "--contiguous",
        action="store_true",
        help="the conv nets in contiguous (NCHW) format, not channels-last",
    )
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument(
        "--samples",
        type=int,
        default=4000,
        help="MNIST sample cap and synthetic reviews (cats: at most 800)",
    )
    args = ap.parse_args()
    quiet()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, epochs {args.epochs}, "
        f"repeats {args.repeats}, convnet4 at {args.image_size}px, conv nets "
        f"{'contiguous' if args.contiguous else 'channels-last'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = project(root, args.image_size, not args.contiguous, args.samples)
        for name in args.cases.split(","):
            bare(params, name, root, 1)  # warm-up: allocator, kernels, imports
            pipeline(params, name, root, 1)
            pipeline(params, name, root, 1, stage=True)
            ratios: dict[str, list[float]] = {"pipeline": [], "stage": []}
            for r in range(args.repeats):
                b = bare(params, name, root, args.epochs)
                p = pipeline(params, name, root, args.epochs)
                s = pipeline(params, name, root, args.epochs, stage=True)
                ratios["pipeline"].append(p / b)
                ratios["stage"].append(s / b)
                print(
                    f"{name} repeat {r}: bare {b:8.0f}/s   pipeline {p:8.0f}/s   "
                    f"stage {s:8.0f}/s   ratios {p / b:.3f} {s / b:.3f}"
                )
            for what, values in ratios.items():
                print(
                    f"{name}: median ratio {what}/bare {statistics.median(values):.3f} "
                    f"(target >= 0.95)"
                )
                result(
                    f"{name} training, {what} / bare loop (samples/s)", statistics.median(values)
                )


if __name__ == "__main__":
    main()
