"""DataLoader settings for the cats-vs-dogs experiments, measured: num_workers 0/1/2 and
persistent workers, through the pipeline's own ArrayDataModule (augmented training batches,
as catdog_cnn_aug), with and without the convnet4 training step.

Loading alone shows the cost of starting workers each epoch; training shows whether moving
augmentation off the main process pays on this machine, where the model already uses every
core. pin_memory only matters with CUDA (params: pin_memory: auto).

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_catdog_loader.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L

from bench_catdog_common import REPO, classifier, median, photo_folder, train_images_per_s
from nnlab.config import load_params, parse_params
from nnlab.data.datamodule import ArrayDataModule
from nnlab.data.prepare import run_download, run_split

SETTINGS = [(0, False), (1, False), (1, True), (2, False), (2, True)]


def project(tmp: Path, n: int, size: int):
    folder, what = photo_folder(tmp, n)
    real = load_params(REPO / "params.yaml")
    aug = real.experiment("catdog_cnn_aug").model_dump()
    params = parse_params({
        "seed": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "progress_bar": False},
        "data": {"cats_vs_dogs": {"source": "remote", "path": str(folder), "image_size": size,
                                  "split_sizes": [n - 64, 32, 32]}},
        "experiments": {"catdog_cnn_aug": {**aug, "batch_size": 32}},
    })
    run_download(params, "cats_vs_dogs", tmp)
    run_split(params, "cats_vs_dogs", tmp)
    return params, what


def loader(params, root: Path, workers: int, persistent: bool):
    trainer = params.trainer.model_copy(update={"num_workers": workers,
                                                "persistent_workers": persistent})
    L.seed_everything(0, workers=True, verbose=False)
    dm = ArrayDataModule("cats_vs_dogs", params.experiment("catdog_cnn_aug"), trainer, 0, root)
    dm.setup("fit")
    return dm.train_dataloader()


def epochs(dl, n: int):
    for _ in range(n):
        yield from dl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=3, help="short epochs per loading run")
    ap.add_argument("--batches", type=int, default=8, help="timed training batches per run")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params, what = project(root, args.images, args.size)
        print(f"images: {what}; {args.size}x{args.size}, batch 32, augmented (catdog_cnn_aug)")
        # warm-up, untimed: the first training steps of a process build oneDNN kernels
        train_images_per_s(classifier(args.size, params.trainer.channels_last),
                           epochs(loader(params, root, 0, False), 2), 4)
        load, train = {}, {}
        for _ in range(args.repeats):
            for w, p in SETTINGS:
                dl = loader(params, root, w, p)
                t0, n = time.perf_counter(), 0
                for b in epochs(dl, args.epochs):
                    n += len(b["y"])
                load.setdefault((w, p), []).append(n / (time.perf_counter() - t0))
                model = classifier(args.size, params.trainer.channels_last)
                # two epochs' worth of batches so non-persistent workers restart once
                per_epoch = len(dl)
                train.setdefault((w, p), []).append(train_images_per_s(
                    model, epochs(dl, 2 + (args.batches + 2) // per_epoch), args.batches))
        base_l, base_t = median(load[(0, False)]), median(train[(0, False)])
        print(f"{'num_workers':>11} {'persistent':>10} {'loading img/s':>14} {'ratio':>6} "
              f"{'training img/s':>15} {'ratio':>6}")
        for w, p in SETTINGS:
            lm, tm = median(load[(w, p)]), median(train[(w, p)])
            print(f"{w:>11} {p!s:>10} {lm:>14.0f} {lm / base_l:>6.2f} {tm:>15.1f} "
                  f"{tm / base_t:>6.2f}")


if __name__ == "__main__":
    main()
