"""Compare: one table of every experiment -> reports/comparison.{md,csv,png}, printed."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from nnlab.config import Params
from nnlab.files import atomic_file, read_json

COLUMNS = [
    "experiment", "dataset", "model", "params", "epochs", "test/acc", "test/loss",
    "best val/acc", "train s", "data source", "pretrained", "run id",
]


def pretrained_cell(pretrained: dict[str, str] | None) -> str:
    """The pretrained backbone actually used; a fallback one in bold, like substitute data."""
    if not pretrained:
        return "-"
    if pretrained.get("fallback"):
        return f"**{pretrained.get('backbone', '?')} (fallback)**"
    return str(pretrained.get("backbone", "?"))


def _row(name: str, root: Path) -> dict[str, Any] | None:
    from nnlab.evaluate import REPORT_ROOT

    report = root / REPORT_ROOT / name
    if not (report / "metrics.json").is_file() or not (report / "run.json").is_file():
        return None
    m = read_json(report / "metrics.json")
    run = read_json(report / "run.json")
    source = run.get("data_source", "?")
    return {
        "experiment": name,
        "dataset": run["dataset"],
        "model": run["model"],
        "params": f"{run['params_total']:,}",
        "epochs": m.get("epochs_run", "?"),
        "test/acc": f"{m['test/acc']:.4f}",
        "test/loss": f"{m['test/loss']:.4f}",
        "best val/acc": f"{m.get('best_val_acc') or float('nan'):.4f}",
        "train s": f"{m.get('train_seconds') or 0:.1f}",
        "data source": source if source == "remote" else f"**{source}**",
        "pretrained": pretrained_cell(run.get("pretrained")),
        "run id": str(run.get("run_id", ""))[:12],
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def compare(params: Params, root: Path = Path(".")) -> str:
    from nnlab.viz import comparison_chart

    root = Path(root)
    rows = [r for name in params.experiments if (r := _row(name, root)) is not None]
    missing = [n for n in params.experiments if n not in {r["experiment"] for r in rows}]
    text = "# nnlab comparison\n\n" + markdown_table(rows) + "\n"
    if any(r["data source"].startswith("**") for r in rows):
        text += ("\n**Bold** data sources are offline substitutes (bundled sample or synthetic "
                 "data): those accuracies are not comparable to the real datasets.\n")
    if any(r["pretrained"].startswith("**") for r in rows):
        text += ("\n**Bold** pretrained backbones are offline fallbacks (the requested weights "
                 "were unreachable): those results are not the requested model's.\n")
    if missing:
        text += f"\nNot evaluated yet: {', '.join(missing)}\n"
    out = root / "reports"
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
