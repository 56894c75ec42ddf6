"""Where the default offline ``dvc repro`` spends its wall time: a fresh clone of this checkout's
HEAD in a temporary folder, ``dvc repro`` there with every ``nnlab`` call timed (a wrapper first
in PATH), then a no-op rerun. Prints the per-stage table, the experiments' summed
``train_seconds`` against the wall time (the share outside training), and the floor that no
stage can go under: the time to start a process that imports a stage (the baseline, measured in
the same run), times the number of such processes.

    python benchmarks/bench_repro.py [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import REPO, cli_env, result

WRAPPER = """#!/bin/sh
start=$(date +%s.%N)
"{python}" -m nnlab.cli "$@"
code=$?
echo "$start $(date +%s.%N) $*" >> "{log}"
exit $code
"""


def import_seconds(module: str, repeats: int = 3) -> float:
    """Best wall time of a fresh interpreter that imports ``module``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=cli_env())
        times.append(time.perf_counter() - start)
    return min(times)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()
    floor = {stage: import_seconds(f"nnlab.stages.{stage}") for stage in ("train", "evaluate")}
    tmp = Path(tempfile.mkdtemp(prefix="nnlab-bench-repro-"))
    try:
        project, log, bin_dir = tmp / "project", tmp / "calls.txt", tmp / "bin"
        subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
        bin_dir.mkdir()
        (bin_dir / "nnlab").write_text(WRAPPER.format(python=sys.executable, log=log))
        (bin_dir / "nnlab").chmod(0o755)
        env = {**cli_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        dvc = [sys.executable, "-m", "dvc", "repro"]
        wall = timed(dvc, project, env)
        noop = timed(dvc, project, env)
        stages: dict[str, list[float]] = defaultdict(list)
        for line in log.read_text().splitlines():
            start, end, stage = line.split(maxsplit=2)
            stages[stage.split()[0]].append(float(end) - float(start))
        reports = sorted((project / "reports" / "experiments").glob("*/metrics.json"))
        train = {p.parent.name: json.loads(p.read_text())["train_seconds"] for p in reports}
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("| stage | calls | seconds | each |\n|---|---|---|---|")
    for stage, times in stages.items():
        print(f"| {stage} | {len(times)} | {sum(times):.1f} | {sum(times) / len(times):.1f} |")
    inside = sum(sum(t) for t in stages.values())
    print(f"| dvc itself | | {wall - inside:.1f} | |")
    print(f"| **wall** | | **{wall:.1f}** | |")
    print("\ntrain_seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in train.items()))
    processes = len(stages["train"]) + len(stages["evaluate"])
    start_floor = (
        len(stages["train"]) * floor["train"] + len(stages["evaluate"]) * floor["evaluate"]
    )
    extra = {s: sum(stages[s]) / len(stages[s]) - floor[s] for s in floor}
    print(f"importing a stage: train {floor['train']:.2f} s, evaluate {floor['evaluate']:.2f} s")
    result("default dvc repro, wall", wall, "s")
    result("default dvc repro, sum of train_seconds", sum(train.values()), "s")
    result("default dvc repro, share outside training", 1 - sum(train.values()) / wall, "")
    result(f"process starts of train+evaluate ({processes}) / wall", start_floor / wall, "x")
    result("evaluate stage beyond its process start, mean", extra["evaluate"], "s")
    result(
        "train stage beyond its process start and train_seconds, mean",
        extra["train"] - sum(train.values()) / len(stages["train"]),
        "s",
    )
    result("no-op dvc repro, wall", noop, "s")


if __name__ == "__main__":
    main()
