"""Two trainings at once on one machine: do they share the cores or fight over them?

mnist_cnn and catdog_cnn as params.yaml has them (data: the bundled MNIST sample and the
synthetic cats and dogs: offline, small) are trained through the `nnlab` CLI (`nnlab download`,
`split`, `train`) in a temporary project, one after the other (the baseline) and then as two
parallel jobs, first with torch's default (``loader.threads`` = the core count in every
process: what each job did before sizing) and then with ``loader.threads: auto`` (nnlab.threads
splits the cores between the live jobs). Prints wall times and the ratio parallel / serial:
with sizing, running both at once should take no longer than running them in turn (<= 1.0).
Heavy: keep the machine otherwise idle.

    flock /tmp/nnlab-heavy.lock python benchmarks/bench_parallel.py [--epochs 2]
    (quick set: benchmarks/run_quick.sh)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import REPO, cli_env, result

JOBS = ("mnist_cnn", "catdog_cnn")


def write_params(root: Path, threads: int | str, args: argparse.Namespace) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"] = {
        "mnist": {**raw["data"]["mnist"], "source": "bundled", "max_samples": args.mnist_samples},
        "cats_vs_dogs": {
            **raw["data"]["cats_vs_dogs"],
            "source": "synthetic",
            "synthetic_size": args.catdog_size,
        },
    }
    raw["features"] = {}
    raw["experiments"] = {
        name: {**raw["experiments"][name], "epochs": args.epochs, "patience": None} for name in JOBS
    }
    raw["trainer"].update(accelerator="cpu", devices=1, enable_progress_bar=False)
    raw["tracking"] = {"log_model": False}
    raw.setdefault("loader", {})["threads"] = threads
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def nnlab(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nnlab.cli", *args],
        cwd=root,
        env=cli_env("OMP_NUM_THREADS", "MKL_NUM_THREADS"),  # torch's default, as in a user's shell
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=3600)
        if p.returncode != 0:
            sys.exit(f"bench_parallel: {' '.join(p.args[3:])} failed:\n{out[-3000:]}")


def wall(root: Path, parallel: bool) -> float:
    t0 = time.perf_counter()
    if parallel:
        wait([nnlab(root, "train", name) for name in JOBS])
    else:
        for name in JOBS:
            wait([nnlab(root, "train", name)])
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--mnist-samples", type=int, default=3000, help="data.mnist.max_samples")
    ap.add_argument("--catdog-size", type=int, default=600, help="data.cats_vs_dogs.synthetic_size")
    args = ap.parse_args()
    from nnlab.threads import available_cores

    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="nnlab-bench-parallel-") as tmp:
        root = Path(tmp)
        write_params(root, cores, args)
        for dataset in ("mnist", "cats_vs_dogs"):
            wait([nnlab(root, "download", dataset)])
            wait([nnlab(root, "split", dataset)])
        print(f"# two trainings ({', '.join(JOBS)}; {args.epochs} epochs) on {cores} cores\n")
        print("| threads | serial s | parallel s | parallel / serial |\n|---|---|---|---|")
        for label, threads in ((f"{cores} (torch default)", cores), ("auto (sized)", "auto")):
            write_params(root, threads, args)
            serial, both = wall(root, parallel=False), wall(root, parallel=True)
            print(f"| {label} | {serial:.1f} | {both:.1f} | {both / serial:.2f} |", flush=True)
            result(f"two trainings, threads {label}: parallel / serial (wall s)", both / serial)
    return 0


if __name__ == "__main__":
    sys.exit(main())
