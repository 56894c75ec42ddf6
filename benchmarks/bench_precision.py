"""fp32 versus bf16 autocast (what Lightning's ``precision: bf16-mixed`` does on the CPU), each
eager and ``torch.compile``d, for every net of the lecture: training steps (forward, loss,
backward, RMSprop step) and inference (forward under ``no_grad``) on seeded random inputs of
the experiments' shapes. The baseline, eager fp32, is measured in the same run; variants take
turns within each round. Prints whether this CPU has native bf16 (``precision: auto`` picks
bf16-mixed only where it does) and the ratio of each variant to eager fp32 (> 1: faster).

    python benchmarks/bench_precision.py [--nets convnet4,lstm] [--no-compile]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from common import median, quiet, result
from nnlab.config import cpu_has_bf16
from nnlab.models.registry import build_model
from nnlab.spec import DataSpec

# net -> (model, options, input shape, classes, batch): as params.yaml's experiments
NETS = {
    "mlp": ("mlp", {"hidden": 512}, (1, 28, 28), 10, 128),
    "cnn_small": ("cnn_small", {}, (1, 28, 28), 10, 64),
    "convnet4": ("convnet4", {}, (3, 150, 150), 2, 32),
    "vgg16_finetune": ("vgg16", {"weights": "none", "trainable_blocks": 1}, (3, 150, 150), 2, 20),
    "lstm": ("lstm", {}, (500,), 2, 64),
    "gru": ("gru", {}, (500,), 2, 64),
}


def inputs(shape: tuple[int, ...], batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if len(shape) == 1:  # token ids and lengths
        return (torch.randint(2, 10000, (batch, *shape), generator=g), torch.full((batch,), 500))
    x = torch.rand(batch, *shape, generator=g)
    return (x.contiguous(memory_format=torch.channels_last),) if shape[0] == 3 else (x,)


def step_time(
    net: torch.nn.Module, x: tuple, y: torch.Tensor, bf16: bool, train: bool, steps: int
) -> float:
    """Median seconds per step over ``steps`` steps, after two untimed ones."""
    opt = torch.optim.RMSprop([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        if train:
            with cast:
                logits = net(*x)
            loss = (
                F.cross_entropy(logits.float(), y)
                if logits.shape[1] > 1
                else F.binary_cross_entropy_with_logits(logits[:, 0].float(), y.float())
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.no_grad(), cast:
                net(*x)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    quiet()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; native bf16 on this "
        f"CPU: {cpu_has_bf16()}"
    )
    variants = [("fp32", False, False), ("bf16", True, False)]
    if not args.no_compile:
        variants += [("fp32 compiled", False, True), ("bf16 compiled", True, True)]
    for name in args.nets.split(","):
        model, options, shape, classes, batch = NETS[name]
        spec = DataSpec(
            "text" if len(shape) == 1 else "image",
            shape,
            tuple(str(c) for c in range(classes)),
            vocab_size=10000,
            extra={"pad_index": 0, "max_len": 500},
        )
        net = build_model(model, spec, options)
        if shape[0] == 3:
            net = net.to(memory_format=torch.channels_last)
        x, y = inputs(shape, batch), torch.randint(0, classes, (batch,))
        for train in (True, False):
            nets = {}
            for label, _, compiled in variants:
                t0 = time.perf_counter()
                nets[label] = torch.compile(net) if compiled else net
                step_time(nets[label], x, y, "bf16" in label, train, 1)  # compiles here
                if compiled:
                    print(f"  {name}: compiling for {label} took {time.perf_counter() - t0:.0f} s")
            got: dict[str, list[float]] = {label: [] for label, _, _ in variants}
            for _ in range(args.repeats):
                for label, bf16, _ in variants:
                    got[label].append(step_time(nets[label], x, y, bf16, train, args.steps))
            base = median(got["fp32"])
            what = "training" if train else "inference"
            print(
                f"{name:16s} {what:9s} "
                + "   ".join(f"{label} {median(v) * 1000:7.1f} ms" for label, v in got.items())
            )
            for label, values in got.items():
                if label != "fp32":
                    result(f"{name} {what}, fp32 / {label} (s per step)", base / median(values))


if __name__ == "__main__":
    main()
