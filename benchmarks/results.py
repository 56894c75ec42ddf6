"""benchmarks/RESULTS.md from the logs of run_quick.sh: one Markdown table of every figure the
benchmarks printed (their ``result: <label> = <value> <unit>`` lines, see common.result),
each with the command that produced it and the 1-minute load average before and after it,
under the machine they ran on.

``LOGS`` holds ``machine.txt`` (``key: value`` lines) and one ``NN-<name>.log`` per benchmark:

    $ python benchmarks/<script> <args>
    uptime before: <uptime>
    <the script's output>
    uptime after: <uptime>
    exit: <status> after <seconds> s

    python benchmarks/results.py LOGS [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

RESULT = re.compile(r"^result: (?P<label>.+) = (?P<value>\S+) (?P<unit>\S+)$")
LOAD = re.compile(r"load average: ([\d.]+)")
EXIT = re.compile(r"^exit: (-?\d+) after (\d+) s$")
BUSY = 1.0  # the load average above which run_quick.sh refuses to start


@dataclass
class Run:
    name: str
    command: str = "?"
    load_before: float | None = None
    load_after: float | None = None
    status: int | None = None
    seconds: int | None = None
    figures: list[tuple[str, str, str]] = field(default_factory=list)
    tail: str = ""


def parse_log(path: Path) -> Run:
    run = Run(path.stem.split("-", 1)[-1])
    lines = path.read_text(errors="replace").splitlines()
    for line in lines:
        if line.startswith("$ ") and run.command == "?":
            run.command = line[2:]
        elif line.startswith(("uptime before:", "uptime after:")) and (m := LOAD.search(line)):
            setattr(run, "load_before" if "before" in line else "load_after", float(m[1]))
        elif m := EXIT.match(line):
            run.status, run.seconds = int(m[1]), int(m[2])
        elif m := RESULT.match(line):
            run.figures.append((m["label"], m["value"], m["unit"]))
    output = [line for line in lines if not line.startswith(("$ ", "uptime ", "exit: "))]
    run.tail = next((line.strip() for line in reversed(output) if line.strip()), "")
    return run


def _value(value: str, unit: str) -> str:
    return f"{value}x" if unit == "x" else f"{value} {unit}"


def _load(run: Run) -> str:
    show = ["?" if v is None else f"{v:.2f}" for v in (run.load_before, run.load_after)]
    return " → ".join(show)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(machine: dict[str, str], runs: list[Run]) -> str:
    out = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run_quick.sh` (through `benchmarks/results.py`): rerun it on "
        "an idle machine rather than editing this file. A ratio (x) compares with the "
        "baseline measured in the same run; each script's docstring says what it measures.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {key}: {value}" for key, value in machine.items()]
    out += [
        "",
        "## Figures",
        "",
        "| benchmark | figure | value | command | load 1 min, before → after | time |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        figures = run.figures or [("FAILED" if run.status else "no figures printed", "", "")]
        for i, (label, value, unit) in enumerate(figures):
            first = i == 0
            out.append(
                "| "
                + " | ".join(
                    [
                        run.name if first else "",
                        _cell(label),
                        _value(value, unit) if value else "",
                        f"`{_cell(run.command)}`" if first else "",
                        _load(run) if first else "",
                        f"{run.seconds} s" if first and run.seconds is not None else "",
                    ]
                )
                + " |"
            )
    failed = [run for run in runs if run.status != 0]
    if failed:
        out += ["", "## Failures", ""]
        out += [f"- {run.name}: exit {run.status}: `{_cell(run.tail)}`" for run in failed]
    busy = [run.name for run in runs if (run.load_before or 0) > BUSY]
    if busy:
        out += [
            "",
            f"Started above a {BUSY} load average (figures less trustworthy): {', '.join(busy)}.",
        ]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    machine_file = args.logs / "machine.txt"
    if not machine_file.is_file():
        print(f"results.py: {machine_file}: missing (run benchmarks/run_quick.sh)", file=sys.stderr)
        return 1
    machine = dict(
        line.split(": ", 1) for line in machine_file.read_text().splitlines() if ": " in line
    )
    runs = [parse_log(path) for path in sorted(args.logs.glob("[0-9][0-9]-*.log"))]
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(render(machine, runs))
    os.replace(tmp, args.out)
    print(
        f"results.py: {sum(len(r.figures) for r in runs)} figures of {len(runs)} "
        f"benchmarks -> {args.out}"
    )
    return 0 if all(run.status == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
