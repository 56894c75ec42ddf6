"""DataLoader settings for the cats-vs-dogs experiments, measured: loader.num_workers 0/1/2
and loader.persistent_workers, through the pipeline's own ArrayDataModule (augmented training
batches, as catdog_cnn_aug), with and without the convnet4 training step. Baseline: 0 workers
(params.yaml's default), in the same run; ratios are setting / baseline.

Loading alone shows the cost of starting workers each epoch; training shows whether moving
augmentation off the main process pays on this machine, where the model already uses every
core. pin_memory only matters with CUDA (loader.pin_memory: auto).

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_catdog_loader.py
    (quick set: benchmarks/run_quick.sh)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightning as L

from bench_catdog_common import catdog_project, convnet4
from common import (
    REPO,
    alternate,
    classifier,
    endless,
    loading_samples_per_s,
    quiet,
    result,
    train_samples_per_s,
)
from nnlab.config import load_params
from nnlab.data.datamodule import ArrayDataModule

SETTINGS = [(0, False), (1, False), (1, True), (2, False), (2, True)]


def loader(params, root: Path, workers: int, persistent: bool):
    """catdog_cnn_aug's training DataLoader with these loader settings."""
    cfg = params.loader.model_copy(
        update={"num_workers": workers, "persistent_workers": persistent}
    )
    L.seed_everything(0, workers=True, verbose=False)
    dm = ArrayDataModule("cats_vs_dogs", params.experiment("catdog_cnn_aug"), cfg, 0, root)
    dm.setup("fit")
    return dm.train_dataloader(), dm.meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=3, help="short epochs per loading run")
    ap.add_argument("--batches", type=int, default=8, help="timed training batches per run")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    quiet()
    augment = load_params(REPO / "params.yaml").experiment("catdog_cnn_aug").augment
    steps = [step.model_dump() for step in augment]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params, what = catdog_project(
            root, args.images, args.size, {"catdog_cnn_aug": convnet4(augment=steps)}
        )
        print(f"images: {what}; {args.size}x{args.size}, batch 32, augmented (catdog_cnn_aug)")

        def training(workers: int, persistent: bool) -> float:
            dl, meta = loader(params, root, workers, persistent)
            # several epochs' worth of batches: non-persistent workers restart in between
            return train_samples_per_s(
                classifier(params, "catdog_cnn_aug", meta), endless(lambda: dl), args.batches
            )

        def loading(workers: int, persistent: bool) -> float:
            dl, _ = loader(params, root, workers, persistent)
            return loading_samples_per_s(lambda: dl, args.epochs)

        training(0, False)  # warm-up, untimed: the first steps build oneDNN kernels
        load = alternate({s: lambda s=s: loading(*s) for s in SETTINGS}, args.repeats)
        train = alternate({s: lambda s=s: training(*s) for s in SETTINGS}, args.repeats)
    base_l, base_t = load[(0, False)], train[(0, False)]
    print(
        f"{'num_workers':>11} {'persistent':>10} {'loading img/s':>14} {'ratio':>6} "
        f"{'training img/s':>15} {'ratio':>6}"
    )
    for w, p in SETTINGS:
        print(
            f"{w:>11} {p!s:>10} {load[(w, p)]:>14.0f} {load[(w, p)] / base_l:>6.2f} "
            f"{train[(w, p)]:>15.1f} {train[(w, p)] / base_t:>6.2f}"
        )
    for w, p in SETTINGS[1:]:
        what = f"num_workers {w}{', persistent' if p else ''}"
        result(f"augmented loading, {what} / 0 workers", load[(w, p)] / base_l)
        result(f"augmented training, {what} / 0 workers", train[(w, p)] / base_t)


if __name__ == "__main__":
    main()
