"""reports/lecture.md: the lecture's numbers next to ours, from the evaluated experiments.

    python tools/lecture.py [--notes docs/lecture-notes.md]

For every experiment it reads what evaluate wrote (metrics.json, run.json) and the split's
manifest, and gives the lecture's (or the book's: Chollet, *Deep Learning with Python*, on the
same 2,000-photo cats-vs-dogs set and IMDB) reference accuracy, our test accuracy with its
standard error on the held-out test split (``sqrt(p (1 - p) / n)``), the epochs, the training
wall time, the data source and the command that reproduces the row from a clean checkout: its
``-S`` overrides are the params of the experiment that differ from the committed params.yaml
(``git show HEAD:params.yaml``), such as the path of the real data.
"""

from __future__ import annotations

import argparse
import math
import shlex
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


def _row(params: Params, name: str, root: Path, committed: Params | None) -> dict[str, Any] | None:
    report = paths.report_dir(name, root)
    if not (report / paths.METRICS).is_file():
        return None
    metrics, run = read_json(report / paths.METRICS), read_json(report / paths.RECEIPT)
    dataset = params.source_dataset(params.experiment(name).dataset)
    acc, n = float(metrics["test/acc"]), int(run.get("test_samples") or 0)
    pretrained = run.get("pretrained") or {}
    path = params.dataset(dataset).path
    source = run.get("data_source", "?")
    if path and source == "remote":  # the real data, read from the user's copy
        source = f"real, from {path}"
    if pretrained.get("backbone"):
        fallback = " (fallback)" if pretrained.get("fallback") else ""
        source += f"; base {pretrained['backbone']}{fallback}"
    reference, where = REFERENCES.get(name, ("-", ""))
    return {
        "experiment": name,
        "reference": f"{reference} ({where})" if where else reference,
        "ours": f"{acc:.3f} ± {standard_error(acc, n):.3f} (n = {n})",
        "epochs": metrics.get("epochs_run", "?"),
        "train": f"{float(metrics.get('train_seconds') or 0) / 60:.1f} min",
        "data": source,
        "command": f"`{reproduce_command(name, overrides(params, committed, name))}`",
    }


COLUMNS = {
    "experiment": "experiment",
    "reference": "lecture / book",
    "ours": "ours: test/acc",
    "epochs": "epochs",
    "train": "training",
    "data": "data",
    "command": "reproduce",
}


def lecture(params: Params, root: Path = Path("."), notes: str = "") -> str:
    committed = committed_params(Path(root))
    rows = [r for name in params.experiments if (r := _row(params, name, root, committed))]
    lines = [
        "# The lecture's numbers, reproduced",
        "",
        "Test accuracy on each experiment's held-out test split, ± one standard error "
        "(sqrt(p(1-p)/n)). Generated by `tools/lecture.py` from reports/experiments/.",
        "",
        "| " + " | ".join(COLUMNS.values()) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    text = "\n".join(lines) + "\n" + (f"\n{notes.strip()}\n" if notes.strip() else "")
    with atomic_file(Path(root) / OUT, "w") as fh:
        fh.write(text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default=PARAMS_FILE)
    parser.add_argument("--notes", default=None, help="a Markdown file appended below the table")
    args = parser.parse_args()
    notes = Path(args.notes).read_text() if args.notes else ""
    print(lecture(load_params(args.params), Path("."), notes))
