"""Training throughput: the pipeline (ArrayDataModule + Classifier + lightning.Trainer) versus
a bare PyTorch loop over the same tensors: same net, batches, optimizer, threads and epochs.

Three cases: mnist_cnn (cnn_small on the bundled MNIST sample), convnet4 without augmentation
(synthetic cats vs dogs, --image-size px) and the GRU (synthetic reviews, padded batches).
Runs alternate (bare, pipeline, bare, pipeline, ...) so background load hits both alike; the
figure is the median ratio pipeline/bare of samples per second (target >= 0.95).

    python benchmarks/bench_train_loop.py [--epochs 2] [--repeats 3] [--cases mnist_cnn,gru]
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

from nnlab.classifier import scale_inputs
from nnlab.config import parse_params
from nnlab.data.datamodule import ArrayDataModule, ArrayDataset
from nnlab.data.prepare import load_arrays, run_download, run_split
from nnlab.train import build_classifier

CASES = {
    "mnist_cnn": {"dataset": "mnist", "model": "cnn_small", "batch_size": 64,
                  "optimizer": "rmsprop"},
    "convnet4": {"dataset": "cats_vs_dogs", "model": "convnet4", "batch_size": 32,
                 "optimizer": "rmsprop"},
    "gru": {"dataset": "imdb", "model": "gru", "batch_size": 64, "optimizer": "adam"},
}


def prepare(root: Path, image_size: int, channels_last: bool):
    params = parse_params({
        "seed": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
        "data": {"mnist": {"source": "bundled"},
                 "cats_vs_dogs": {"source": "synthetic", "synthetic_size": 800,
                                  "synthetic_image_size": image_size},
                 "imdb": {"source": "synthetic", "synthetic_size": 4000}},
        "experiments": {name: {**case, "epochs": 1,
                               "channels_last": channels_last and name == "convnet4"}
                        for name, case in CASES.items()},
    })
    for dataset in params.data:
        run_download(params, dataset, root)
        run_split(params, dataset, root)
    return params


def pipeline(params, name: str, root: Path, epochs: int) -> float:
    exp = params.experiment(name)
    L.seed_everything(0, verbose=False)
    dm = ArrayDataModule(exp.dataset, exp, params.loader, 0, root)
    model = build_classifier(params, name, dm.meta, "bench")
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return len(dm.datasets["train"]) * epochs / (time.perf_counter() - t0)


def bare(params, name: str, root: Path, epochs: int) -> float:
    """The same net and optimizer over whole tensors, indexed per batch: no Lightning."""
    exp = params.experiment(name)
    L.seed_everything(0, verbose=False)
    arrays = {k: np.array(v) for k, v in load_arrays(exp.dataset, "train", root).items()}
    tensors = ArrayDataset(arrays).__getitems__(list(range(len(arrays["y"]))))
    meta_model = build_classifier(params, name, ArrayDataModule(
        exp.dataset, exp, params.loader, 0, root).meta, "bench")
    net, loss_fn = meta_model.net, meta_model.loss
    opt = meta_model.configure_optimizers()
    net.train()
    n = len(tensors["y"])
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(n).split(exp.batch_size):
            batch = {k: v[idx] for k, v in tensors.items()}
            loss = loss_fn(net(*scale_inputs(batch, exp.channels_last)), batch["y"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return n * epochs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--channels-last", action="store_true", help="convnet4 in channels-last")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, epochs {args.epochs}, "
          f"repeats {args.repeats}, convnet4 at {args.image_size}px"
          f"{' channels-last' if args.channels_last else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = prepare(root, args.image_size, args.channels_last)
        for name in args.cases.split(","):
            bare(params, name, root, 1)  # warm-up: allocator, kernels, imports
            pipeline(params, name, root, 1)
            ratios = []
            for r in range(args.repeats):
                b = bare(params, name, root, args.epochs)
                p = pipeline(params, name, root, args.epochs)
                ratios.append(p / b)
                print(f"{name} repeat {r}: bare {b:8.0f}/s   pipeline {p:8.0f}/s   "
                      f"ratio {p / b:.3f}")
            print(f"{name}: median ratio pipeline/bare {statistics.median(ratios):.3f} "
                  f"(target >= 0.95)")


if __name__ == "__main__":
    main()
