"""reports/lecture.md: the lecture's numbers next to ours, from the evaluated experiments.

    python tools/lecture.py [WORKSPACE ...] [--notes docs/lecture-notes.md]

WORKSPACE: a project folder that ran the lecture with one seed (default: this one); several
give the mean over their seeds (tools/real_lecture.sh makes them). For every experiment it
reads what evaluate wrote (metrics.json, run.json) and gives the lecture's (or the book's:
Chollet, *Deep Learning with Python*, on the same 2,000-photo cats-vs-dogs set and IMDB)
reference accuracy, the target, our test accuracy on the held-out test split with one standard
error and each seed's, the epochs, the training minutes, the precision, the data source and the
command that reproduces the row from a clean checkout: its
``-S`` overrides are the params of the experiment that differ from the committed params.yaml
(``git show HEAD:params.yaml``), such as the path of the real data.
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import subprocess
from pathlib import Path
from typing import Any

import yaml

from nnlab import paths
from nnlab.config import PARAMS_FILE, ConfigError, Params, load_params, parse_params
from nnlab.files import atomic_file, read_json

OUT = Path("reports/lecture.md")

# experiment -> (reference test accuracy as the lecture states it, where it comes from)
REFERENCES: dict[str, tuple[str, str]] = {
    "mnist_mlp": ("0.978", "Dense 512 on all 60,000 digits (book, ch. 2)"),
    "mnist_cnn": ("0.985", "the small convnet on all 60,000 digits (lecture)"),
    # the book's cats-vs-dogs and IMDB figures are validation accuracies, except fine-tuning's
    "catdog_cnn": ("≈ 0.71", "validation; convnet4, 2,000 photos, 20 epochs (book, 5.2)"),
    "catdog_cnn_aug": (
        "≈ 0.82",
        "validation; with augmentation and dropout, 100 epochs (book, 5.2)",
    ),
    "catdog_vgg16_features": (
        "≈ 0.90",
        "validation; VGG16 features + Dense head, 30 epochs (book, 5.3)",
    ),
    "catdog_vgg16_finetune": ("≈ 0.97", "test; fine-tuning block5, 100 epochs (book, 5.3)"),
    "imdb_lstm": (
        "≈ 0.89",
        "validation; Embedding 32 + LSTM 32, last 500 words, 10 epochs (book, 6.2)",
    ),
    "imdb_gru": ("-", "not in the lecture"),
}


# experiment -> (the target test accuracy, as the mean over seeds; an experiment it must
# beat as well)
TARGETS: dict[str, tuple[float, str | None]] = {
    "mnist_cnn": (0.975, None),
    "catdog_cnn": (0.75, None),
    "catdog_cnn_aug": (0.83, None),
    "catdog_vgg16_features": (0.97, None),
    "catdog_vgg16_finetune": (0.975, "catdog_vgg16_features"),
    "imdb_lstm": (0.88, None),
    "imdb_gru": (0.88, None),
}


def standard_error(acc: float, n: int) -> float:
    """One standard error of an accuracy measured on ``n`` test samples."""
    return math.sqrt(acc * (1 - acc) / n) if n else float("nan")


def committed_params(root: Path) -> Params | None:
    """params.yaml as committed at HEAD, or None (no git, no commit, not valid)."""
    try:
        text = subprocess.run(
            ["git", "show", f"HEAD:{PARAMS_FILE}"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return parse_params(yaml.safe_load(text), f"HEAD:{PARAMS_FILE}")
    except (OSError, subprocess.SubprocessError, yaml.YAMLError, ConfigError):
        return None


def overrides(params: Params, committed: Params | None, name: str) -> dict[str, Any]:
    """The params of experiment ``name`` that differ from the committed ones, as the dotted
    params.yaml keys ``dvc exp run -S`` takes. Without a committed copy of the experiment:
    only the data's ``path``."""
    if committed is None or name not in committed.experiments:
        dataset = params.source_dataset(params.experiment(name).dataset)
        path = params.dataset(dataset).path
        return {f"data.{dataset}.path": path} if path else {}
    now, then = params.tree(name), committed.tree(name)
    now[f"experiments.{name}"], then[f"experiments.{name}"] = (
        now.pop("experiment"),
        then.pop("experiment"),
    )
    return _differences(now, then)


def _differences(now: Any, then: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys whose values differ; mappings are compared key by key, anything else
    (lists too) as a whole."""
    if isinstance(now, dict) and isinstance(then, dict):
        out: dict[str, Any] = {}
        for key in [*now, *(k for k in then if k not in now)]:
            out.update(_differences(now.get(key), then.get(key), f"{prefix}{key}."))
        return out
    return {} if now == then else {prefix.rstrip("."): now}


def reproduce_command(name: str, changed: dict[str, Any]) -> str:
    """The command that reruns the row: ``-S`` for each changed param, then its evaluate
    stage (dvc reruns what that changes upstream: the download, the split, the training)."""
    sets = "".join(f"-S {shlex.quote(f'{key}={_value(value)}')} " for key, value in changed.items())
    return f"dvc exp run {sets}evaluate@{name}"


def _value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("\n...").strip()


def _row(params: Params, name: str, root: Path) -> dict[str, Any] | None:
    """One workspace's figures of experiment ``name``, or None (not evaluated there)."""
    report = paths.report_dir(name, root)
    if not (report / paths.METRICS).is_file():
        return None
    metrics, run = read_json(report / paths.METRICS), read_json(report / paths.RECEIPT)
    dataset = params.source_dataset(params.experiment(name).dataset)
    pretrained = run.get("pretrained") or {}
    path = params.dataset(dataset).path
    source = run.get("data_source", "?")
    if path and source == "remote":  # the real data, read from the user's copy
        source = f"real, from {path}"
    if pretrained.get("backbone"):
        fallback = " (fallback)" if pretrained.get("fallback") else ""
        source += f"; base {pretrained['backbone']}{fallback}"
    return {
        "seed": params.seed,
        "acc": float(metrics["test/acc"]),
        "n": int(run.get("test_samples") or 0),
        "epochs": metrics.get("epochs_run", "?"),
        "minutes": float(metrics.get("train_seconds") or 0) / 60,
        "precision": run.get("precision", "?"),
        "data": source,
    }


def summarize(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """(mean test/acc, one standard error): over seeds, that of their mean (sample standard
    deviation / sqrt(k)); of one run, the binomial one of its test set."""
    accs = [r["acc"] for r in runs]
    mean = statistics.fmean(accs)
    if len(accs) > 1:
        return mean, statistics.stdev(accs) / math.sqrt(len(accs))
    return mean, standard_error(mean, runs[0]["n"])


COLUMNS = {
    "experiment": "experiment",
    "reference": "lecture / book",
    "target": "target",
    "ours": "ours: test/acc ± 1 SE",
    "seeds": "per seed",
    "epochs": "epochs",
    "train": "training",
    "precision": "precision",
    "data": "data",
    "command": "reproduce",
}


def lecture(roots: list[Path], notes: str = "", out: Path = OUT) -> str:
    """The table of every experiment over the workspaces ``roots`` (one seed each), written to
    ``out`` (relative paths: in the first workspace)."""
    each = [(load_params(Path(root) / PARAMS_FILE), root) for root in roots]
    first, committed = each[0][0], committed_params(Path(roots[0]))
    means: dict[str, float] = {}
    rows, total = [], 0.0
    for name in first.experiments:
        runs = [r for params, root in each if (r := _row(params, name, root))]
        if not runs:
            continue
        mean, se = summarize(runs)
        means[name] = mean
        minutes = statistics.fmean(r["minutes"] for r in runs)
        total += minutes
        reference, where = REFERENCES.get(name, ("-", ""))
        goal, above = TARGETS.get(name, (None, None))
        target = "-"
        if goal is not None:
            met = mean >= goal and (above not in means or mean > means[above])
            target = f"≥ {goal}" + (f", > {above}" if above else "")
            target += " **met**" if met else " **not met**"
        changed = {k: v for k, v in overrides(first, committed, name).items() if k != "seed"}
        rows.append({
            "experiment": name,
            "reference": f"{reference} ({where})" if where else reference,
            "target": target,
            "ours": f"{mean:.3f} ± {se:.3f} (n = {runs[0]['n']}" + (
                f", {len(runs)} seeds)" if len(runs) > 1 else ")"),
            "seeds": ", ".join(f"{r['acc']:.3f} ({r['seed']})" for r in runs),
            "epochs": "/".join(sorted({str(r["epochs"]) for r in runs})),
            "train": f"{minutes:.1f} min",
            "precision": "/".join(sorted({r["precision"] for r in runs})),
            "data": runs[0]["data"],
            "command": f"`{reproduce_command(name, changed)}`",
        })  # fmt: skip
    seeds = ", ".join(str(params.seed) for params, _ in each)
    lines = [
        "# The lecture's numbers, reproduced",
        "",
        f"Test accuracy on each experiment's held-out test split, the mean over seeds {seeds} "
        "(`-S seed=N` on the reproduce command) ± one standard error: of that mean over "
        "several seeds (standard deviation / sqrt(seeds)), of the one test set for one "
        f"(sqrt(p(1-p)/n)). Training: minutes per seed; {total:.1f} min for the whole table. "
        "Generated by `tools/lecture.py` from reports/experiments/ of each seed's workspace.",
        "",
        "| " + " | ".join(COLUMNS.values()) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    text = "\n".join(lines) + "\n" + (f"\n{notes.strip()}\n" if notes.strip() else "")
    with atomic_file(Path(roots[0]) / out, "w") as fh:
        fh.write(text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "workspaces",
        nargs="*",
        type=Path,
        default=[Path(".")],
        help="project folders of one seed each, evaluated (default: this one)",
    )
    parser.add_argument("--notes", default=None, help="a Markdown file appended below the table")
    args = parser.parse_args()
    notes = Path(args.notes).read_text() if args.notes else ""
    print(lecture(args.workspaces, notes))
