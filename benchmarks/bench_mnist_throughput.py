"""Training throughput of cnn_small: the pipeline (ArrayDataModule + Classifier + Trainer)
versus a bare PyTorch loop over the same tensors, same batch size, threads and epochs.

Runs alternate (bare, pipeline, bare, pipeline, ...) so background load hits both alike;
the figure that matters is the median ratio pipeline/bare (target >= 0.90).

    python benchmarks/bench_mnist_throughput.py [--epochs 3] [--repeats 3] [--batch-size 64]
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

from nnlab.classifier import Classifier
from nnlab.config import parse_params
from nnlab.data.datamodule import ArrayDataModule
from nnlab.data.prepare import load_arrays, run_download, run_split
from nnlab.models.registry import build_model


def prepare(root: Path, batch_size: int):
    params = parse_params({
        "seed": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "progress_bar": False},
        "data": {"mnist": {"source": "bundled"}},
        "experiments": {"b": {"dataset": "mnist", "model": "cnn_small", "epochs": 1,
                              "batch_size": batch_size, "optimizer": "rmsprop"}},
    })
    run_download(params, "mnist", root)
    run_split(params, "mnist", root)
    return params


def pipeline(params, root: Path, epochs: int) -> tuple[float, int]:
    exp = params.experiment("b")
    L.seed_everything(0, verbose=False)
    dm = ArrayDataModule("mnist", exp, params.trainer, 0, root)
    model = Classifier(model="cnn_small", meta=dm.meta, optimizer="rmsprop", lr=1e-3)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return time.perf_counter() - t0, len(dm.datasets["train"]) * epochs


def bare(params, root: Path, epochs: int, batch_size: int) -> tuple[float, int]:
    from nnlab.data.prepare import load_meta
    from nnlab.spec import spec_from_meta

    torch.manual_seed(0)
    arrays = load_arrays("mnist", "train", root)
    x = torch.from_numpy(np.array(arrays["x"])).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    y = torch.from_numpy(np.array(arrays["y"]))
    net = build_model("cnn_small", spec_from_meta(load_meta("mnist", root)))
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3)
    net.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(batch_size):
            logits = net(x[idx].float().div_(255))
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0, len(y) * epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, epochs {args.epochs}, repeats {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = prepare(root, args.batch_size)
        bare(params, root, 1, args.batch_size)  # warm-up: allocator, kernels, imports
        pipeline(params, root, 1)
        ratios, rates = [], {"bare": [], "pipeline": []}
        for r in range(args.repeats):
            sb, nb = bare(params, root, args.epochs, args.batch_size)
            sp, n_p = pipeline(params, root, args.epochs)
            rates["bare"].append(nb / sb)
            rates["pipeline"].append(n_p / sp)
            ratios.append((n_p / sp) / (nb / sb))
            print(f"repeat {r}: bare {nb / sb:8.0f} img/s   pipeline {n_p / sp:8.0f} img/s   "
                  f"ratio {ratios[-1]:.3f}")
    print(f"median: bare {statistics.median(rates['bare']):.0f} img/s, pipeline "
          f"{statistics.median(rates['pipeline']):.0f} img/s, "
          f"ratio pipeline/bare {statistics.median(ratios):.3f} (target >= 0.90)")


if __name__ == "__main__":
    main()
