"""compare: every evaluated experiment (evaluate's JSON) -> reports/comparison.{md,csv,png}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from nnlab import paths
from nnlab.config import Params
from nnlab.files import atomic_file, read_json

NUMBERS = {"test/acc": 4, "test/loss": 4, "val/acc_best": 4, "train_seconds": 1}  # digits
COLUMNS = ["experiment", "dataset", "model", "params", "epochs_run", *NUMBERS]
COLUMNS += ["data source", "pretrained", "run id"]
NOTES = {
    "data source": "\n**Bold** data sources are offline substitutes (bundled sample or synthetic "
    "data): those accuracies are not comparable to the real datasets.\n",
    "pretrained": "\n**Bold** pretrained backbones are offline fallbacks (the requested weights "
    "were unreachable): those results are not the requested model's.\n",
}


def pretrained_cell(pretrained: dict[str, str] | None) -> str:
    """The pretrained backbone actually used; a fallback one in bold, like substitute data."""
    if not pretrained:
        return "-"
    backbone = str(pretrained.get("backbone", "?"))
    return f"**{backbone} (fallback)**" if pretrained.get("fallback") else backbone


def _row(name: str, root: Path) -> dict[str, Any] | None:
    """The experiment's row, or None before its evaluation; malformed files: one ValueError."""
    report = paths.report_dir(name, root)
    if not (report / paths.METRICS).exists() or not (report / paths.RECEIPT).exists():
        return None
    m, run = read_json(report / paths.METRICS), read_json(report / paths.RECEIPT)
    try:
        numbers = {k: m[k] if k.startswith("test/") else m.get(k) for k in NUMBERS}
        source = run.get("data_source", "?")
        return {
            "experiment": name,
            "dataset": run["dataset"],
            "model": run["model"],
            "params": f"{run['params_total']:,}",
            "epochs_run": m.get("epochs_run", "?"),
            **{k: "-" if v is None else f"{float(v):.{NUMBERS[k]}f}" for k, v in numbers.items()},
            "data source": source if source == "remote" else f"**{source}**",
            "pretrained": pretrained_cell(run.get("pretrained")),
            "run id": str(run.get("run_id", ""))[:12],
        }
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{report}: {paths.METRICS} and {paths.RECEIPT} are not what "
            f"evaluate@{name} writes ({type(err).__name__}: {err}); rerun it"
        ) from None


def run(params: Params, root: Path = Path(".")) -> str:
    root = Path(root)
    rows = [r for name in params.experiments if (r := _row(name, root)) is not None]
    missing = [n for n in params.experiments if n not in {r["experiment"] for r in rows}]
    table = [COLUMNS, ["---"] * len(COLUMNS), *([str(r[c]) for c in COLUMNS] for r in rows)]
    text = "# nnlab comparison\n\n" + "".join(f"| {' | '.join(cells)} |\n" for cells in table)
    text += "".join(note for c, note in NOTES.items() if any(r[c].startswith("**") for r in rows))
    if missing:
        text += f"\nNot evaluated yet: {', '.join(missing)}\n"
    out = root / paths.COMPARISON
    with atomic_file(out / "comparison.md", "w") as fh:
        fh.write(text)
    with atomic_file(out / "comparison.csv", "w") as fh:
        pd.DataFrame(rows, columns=COLUMNS).to_csv(fh, index=False)
    # test accuracy per experiment, offline substitutes hatched
    fig = Figure(figsize=(max(4, 1.1 * len(rows) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    names = [r["experiment"] for r in rows]
    bars = ax.bar(names, [float(r["test/acc"]) for r in rows])
    for bar, row in zip(bars, rows, strict=True):
        if any(row[c].startswith("**") for c in NOTES):
            bar.set(hatch="//", alpha=0.6)
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="test/acc")
    title = "nnlab: test accuracy by experiment\n(hatched = offline substitute data or backbone)"
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    with atomic_file(out / "comparison.png", "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    return text
