"""One CUDA GPU, under 8 minutes: does nnlab use it, and how fast.

1. convnet4 training throughput (150x150 RGB, batch 64): fp32, bf16-mixed, bf16 + channels-last.
2. VGG16 conv base feature extraction (the features@ cache's work) on the GPU vs the CPU.
3. `nnlab train` with strategy ddp, devices 1, on the GPU, in a temporary project
   (the bundled MNIST sample), then `nnlab evaluate` there.

Throughputs drive torch directly (random inputs, random weights: no download); the pipeline
checks go through the CLI as users run it. Exits 2 when no CUDA GPU is visible. ``--cpu``
runs every part on the CPU at toy sizes (to check the script itself without a GPU).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import cli_env


def timed_steps(step, n: int, sync) -> float:
    """Seconds per call of ``step`` over ``n`` calls after two warm-up calls."""
    for _ in range(2):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - t0) / n


def convnet4_throughput(device: str, steps: int, batch: int, size: int) -> dict[str, float]:
    from nnlab.models.registry import build_model
    from nnlab.spec import DataSpec

    spec = DataSpec("image", (3, size, size), ("cat", "dog"))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {}
    for label, dtype, channels_last in (
        ("fp32", None, False),
        ("bf16-mixed", torch.bfloat16, False),
        ("bf16-mixed + channels-last", torch.bfloat16, True),
    ):
        torch.manual_seed(0)
        net = build_model("convnet4", spec, {}).to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        net = net.to(memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
        y = torch.randint(0, 2, (batch, 1), device=device).float()

        def step(net=net, opt=opt, x=x, y=y, dtype=dtype):
            with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out[label] = batch / timed_steps(step, steps, sync)
    return out


@torch.inference_mode()
def vgg16_throughput(device: str, batches: int, batch: int, size: int) -> float:
    from torchvision.models import vgg16

    base = vgg16(weights=None).features.eval().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        return batch / timed_steps(lambda: base(x), batches, sync)


def pipeline(accelerator: str, work: Path) -> dict[str, float]:
    """`nnlab download/split/train/evaluate` in a temporary project; seconds per command."""
    import yaml

    params = {
        "seed": 1,
        "trainer": {"accelerator": accelerator, "devices": 1, "strategy": "ddp"},
        "data": {"mnist": {"kind": "mnist", "source": "bundled", "max_samples": 2000}},
        "experiments": {
            "mnist_cnn": {"dataset": "mnist", "model": "cnn_small", "epochs": 2, "batch_size": 64}
        },
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    seconds = {}
    for cmd in (
        ["download", "mnist"],
        ["split", "mnist"],
        ["train", "mnist_cnn"],
        ["evaluate", "mnist_cnn"],
    ):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "nnlab.cli", *cmd],
            cwd=work,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            sys.exit(f"gpu_check: `nnlab {' '.join(cmd)}` failed:\n{proc.stderr[-3000:]}")
        seconds[cmd[0]] = time.perf_counter() - t0
        if cmd[0] == "train":
            log = proc.stdout + proc.stderr
            if accelerator == "gpu" and "GPU available: True (cuda)" not in log:
                sys.exit("gpu_check: `nnlab train` did not see the GPU:\n" + log[-3000:])
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="toy sizes on the CPU (checks the script)")
    args = ap.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); "
            "run on a GPU machine, or with --cpu to check the script",
            file=sys.stderr,
        )
        return 2
    device = "cpu" if args.cpu else "cuda"
    small = args.cpu
    name = "CPU (--cpu)" if small else torch.cuda.get_device_name(0)
    print(f"# nnlab GPU check on {name}; torch {torch.__version__}")

    rates = convnet4_throughput(
        device, steps=2 if small else 50, batch=8 if small else 64, size=64 if small else 150
    )
    print(
        "\n## convnet4 training, 150x150x3, batch 64 (images/s)"
        if not small
        else "\n## convnet4 training, toy size (images/s)"
    )
    for label, rate in rates.items():
        print(f"{label:28s} {rate:10.1f}   x{rate / rates['fp32']:.2f} vs fp32")

    size = 64 if small else 150
    gpu_rate = vgg16_throughput(device, 2 if small else 30, 8 if small else 64, size)
    cpu_rate = vgg16_throughput("cpu", 1 if small else 2, 8 if small else 16, size)
    print(f"\n## VGG16 conv base, feature extraction at {size}x{size} (images/s)")
    print(
        f"{device:28s} {gpu_rate:10.1f}\ncpu{'':25s} {cpu_rate:10.1f}   "
        f"{device} / cpu = x{gpu_rate / cpu_rate:.1f}"
    )

    with tempfile.TemporaryDirectory(prefix="nnlab-gpu-check-") as tmp:
        secs = pipeline("cpu" if small else "gpu", Path(tmp))
    print("\n## nnlab CLI: MNIST sample, cnn_small, 2 epochs, strategy ddp, devices 1 (s)")
    for cmd, s in secs.items():
        print(f"{cmd:28s} {s:10.1f}")
    print("\ngpu_check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
