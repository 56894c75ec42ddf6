"""Try nnlab.viz.inside's pictures on real photos (<class>/<image> folders), e.g.
``python tools/look_inside.py /work/shared/datasets/cats_and_dogs_small /tmp/viz_out``: a head
trained briefly on the bundled EfficientNet-Lite0 base (or ``--model convnet4``), with timings."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from nnlab.models.registry import build_model
from nnlab.spec import DataSpec
from nnlab.viz import inside


def load(folder: Path, per_class: int, size: int, offset: int = 0):
    """(N, 3, size, size) floats in [0, 1] (centre square crops) and labels, and classes."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, name in enumerate(classes):
        files = sorted((folder / name).iterdir())[offset : offset + per_class]
        for f in files:
            img = Image.open(f).convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size))
            xs.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255)
            ys.append(label)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys), classes


def fit(params, forward, x, y, epochs: int, batch: int = 32) -> float:
    """A few epochs of Adam on binary cross-entropy; returns the last epoch's accuracy."""
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    acc = 0.0
    for _ in range(epochs):
        right = 0
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            logit = forward(x[idx])[:, 0]
            loss = nn.functional.binary_cross_entropy_with_logits(logit, y[idx].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            right += int(((logit > 0).long() == y[idx]).sum())
        acc = right / len(x)
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default="lite0", choices=("lite0", "convnet4"))
    ap.add_argument("--size", type=int, default=160, help="photo size (px)")
    ap.add_argument("--train", type=int, default=150, help="training photos per class")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--show", type=int, default=4, help="validation photos per class")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    x_val, y_val, classes = load(args.data / "validation", args.show, args.size, offset=7)
    spec = DataSpec("image", (3, args.size, args.size), tuple(classes))
    if args.model == "lite0":
        net = build_model("vgg16", spec, {"backbone": "efficientnet_lite0", "source": "bundled"})
    else:
        net = build_model("convnet4", spec)
    print(f"built {args.model} in {time.perf_counter() - t0:.1f}s")
    if args.train and args.epochs:
        t0 = time.perf_counter()
        x, y, _ = load(args.data / "train", args.train, args.size)
        if args.model == "lite0":  # the frozen base once, then the head on its features
            with torch.no_grad():
                feats = torch.cat([net.base.eval()(b) for b in x.split(50)])
            acc = fit(net.head.parameters(), net.head.train(), feats, y, args.epochs)
        else:
            acc = fit(net.parameters(), net.train(), x, y, args.epochs)
        net.eval()
        with torch.no_grad():
            val = float(((net(x_val)[:, 0] > 0).long() == y_val).float().mean())
        print(
            f"trained in {time.perf_counter() - t0:.1f}s on {len(x)} photos: train acc "
            f"{acc:.3f}, acc on the {len(x_val)} shown photos {val:.3f}"
        )
    net.eval()
    t0 = time.perf_counter()
    options = {"filters": args.filters, "steps": args.steps, "seed": args.seed}
    written = inside.model_pictures(net, x_val, y_val.numpy(), classes, args.out, **options)
    print(f"model_pictures: {time.perf_counter() - t0:.1f}s, {len(written)} files in {args.out}")
    for path in written:
        print(f"  {path.name}")


if __name__ == "__main__":
    main()
