"""Compare: one table of every experiment -> reports/comparison.{md,csv,png}, printed.

Reads only the evaluate stage's JSON files (no torch): the numbers keep their names
(``test/acc``, ``val/acc_best``, ...), the same as in metrics.json and MLflow.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from nnlab import paths
from nnlab.config import Params
from nnlab.files import atomic_file, read_json

COLUMNS = [
    "experiment",
    "dataset",
    "model",
    "params",
    "epochs_run",
    "test/acc",
    "test/loss",
    "val/acc_best",
    "train_seconds",
    "data source",
    "pretrained",
    "run id",
]


def pretrained_cell(pretrained: dict[str, str] | None) -> str:
    """The pretrained backbone actually used; a fallback one in bold, like substitute data."""
    if not pretrained:
        return "-"
    if pretrained.get("fallback"):
        return f"**{pretrained.get('backbone', '?')} (fallback)**"
    return str(pretrained.get("backbone", "?"))


def _number(value: Any, digits: int) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _row(name: str, root: Path) -> dict[str, Any] | None:
    """The experiment's row, or None before its evaluation; files that do not hold what
    evaluate writes are one ValueError naming them."""
    report = paths.report_dir(name, root)
    if not (report / paths.METRICS).exists() or not (report / paths.RECEIPT).exists():
        return None
    m = read_json(report / paths.METRICS)
    run = read_json(report / paths.RECEIPT)
    try:
        return _cells(name, m, run)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{report}: {paths.METRICS} and {paths.RECEIPT} are not what "
            f"evaluate@{name} writes ({type(err).__name__}: {err}); rerun it"
        ) from None


def _cells(name: str, m: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    source = run.get("data_source", "?")
    return {
        "experiment": name,
        "dataset": run["dataset"],
        "model": run["model"],
        "params": f"{run['params_total']:,}",
        "epochs_run": m.get("epochs_run", "?"),
        "test/acc": _number(m["test/acc"], 4),
        "test/loss": _number(m["test/loss"], 4),
        "val/acc_best": _number(m.get("val/acc_best"), 4),
        "train_seconds": _number(m.get("train_seconds"), 1),
        "data source": source if source == "remote" else f"**{source}**",
        "pretrained": pretrained_cell(run.get("pretrained")),
        "run id": str(run.get("run_id", ""))[:12],
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def comparison_chart(rows: list[dict[str, Any]], out: Path) -> None:
    """Bar chart of test accuracy per experiment; offline substitutes hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["experiment"] for r in rows]
    accs = [float(r["test/acc"]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(rows) + 2), 4))
    bars = ax.bar(names, accs, color="tab:blue")
    for bar, r in zip(bars, rows, strict=True):
        if str(r["data source"]).startswith("**") or str(r.get("pretrained", "")).startswith("**"):
            bar.set_hatch("//")
            bar.set_alpha(0.6)
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"{bar.get_height():.3f}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test/acc")
    ax.set_title(
        "nnlab: test accuracy by experiment\n(hatched = offline substitute data or "
        "pretrained backbone)",
        fontsize=10,
    )
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    with atomic_file(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def run(params: Params, root: Path = Path(".")) -> str:
    root = Path(root)
    rows = [r for name in params.experiments if (r := _row(name, root)) is not None]
    missing = [n for n in params.experiments if n not in {r["experiment"] for r in rows}]
    text = "# nnlab comparison\n\n" + markdown_table(rows) + "\n"
    if any(r["data source"].startswith("**") for r in rows):
        text += (
            "\n**Bold** data sources are offline substitutes (bundled sample or synthetic "
            "data): those accuracies are not comparable to the real datasets.\n"
        )
    if any(r["pretrained"].startswith("**") for r in rows):
        text += (
            "\n**Bold** pretrained backbones are offline fallbacks (the requested weights "
            "were unreachable): those results are not the requested model's.\n"
        )
    if missing:
        text += f"\nNot evaluated yet: {', '.join(missing)}\n"
    out = root / paths.COMPARISON
    with atomic_file(out / "comparison.md", "w") as fh:
        fh.write(text)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    with atomic_file(out / "comparison.csv", "w") as fh:
        fh.write(buf.getvalue())
    comparison_chart(rows, out / "comparison.png")
    return text
