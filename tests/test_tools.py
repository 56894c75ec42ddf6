"""The analysis tools under tools/ that the docs quote."""

from __future__ import annotations

import json
import math
import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _load(name: str) -> SimpleNamespace:
    return SimpleNamespace(**runpy.run_path(str(TOOLS / f"{name}.py")))


def test_mcnemar_exact_is_the_two_sided_binomial_tail():
    mcnemar_exact = _load("paired_test").mcnemar_exact
    assert mcnemar_exact(0, 0) == mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(2, 0) == 0.5
    assert mcnemar_exact(10, 0) == mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    tail = sum(math.comb(15, k) for k in range(4)) / 2**15  # 12 against 3: P(X <= 3), doubled
    assert mcnemar_exact(12, 3) == pytest.approx(2 * tail) and mcnemar_exact(9, 4) > 0.05


def test_lecture_table_and_what_differs_from_the_committed_params(project, tmp_path):
    import subprocess

    import yaml

    from nnlab.files import read_json
    from nnlab.stages.evaluate import run as evaluate
    from nnlab.stages.train import run as train
    from tests.conftest import TINY, params_text, tiny_params

    lecture = _load("lecture")
    params = tiny_params()
    (project / "params.yaml").write_text(params_text(params))
    train(params, "mnist_cnn", project)
    evaluate(params, "mnist_cnn", project)
    assert lecture.standard_error(0.8, 250) == pytest.approx(0.0253, abs=1e-4)
    text = lecture.lecture([project], notes="Notes here.")
    row = next(line for line in text.splitlines() if line.startswith("| mnist_cnn |"))
    acc = read_json(project / "reports/experiments/mnist_cnn/metrics.json")["test/acc"]
    n = read_json(project / "reports/experiments/mnist_cnn/run.json")["test_samples"]
    assert f"{acc:.3f} ± {lecture.standard_error(acc, n):.3f} (n = {n})" in row
    assert "0.985" in row and "`dvc exp run evaluate@mnist_cnn`" in row and "| 32-true |" in row
    assert ("**met**" if acc >= 0.975 else "**not met**") in row
    assert (project / "reports/lecture.md").read_text() == text and "Notes here." in text

    # a second seed's workspace: the mean, the standard error of the mean, each seed's figure
    other = tmp_path / "seed8"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns("mlruns", "data"))
    (other / "params.yaml").write_text(params_text(tiny_params(seed=8)))
    metrics = other / "reports/experiments/mnist_cnn/metrics.json"
    metrics.write_text(json.dumps({**read_json(metrics), "test/acc": acc - 0.02}))
    text = lecture.lecture([project, other], out=tmp_path / "two.md")
    row = next(line for line in text.splitlines() if line.startswith("| mnist_cnn |"))
    assert f"{acc - 0.01:.3f} ± 0.010 (n = {n}, 2 seeds)" in row
    assert f"{acc:.3f} ({params.seed}), {acc - 0.02:.3f} (8)" in row
    assert f"seeds {params.seed}, 8" in text
    assert lecture.summarize([{"acc": a, "n": 9} for a in (0.8, 0.82, 0.84)]) == pytest.approx(
        (0.82, 0.02 / math.sqrt(3))
    )

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    assert lecture.committed_params(tmp_path) is None  # not a repository
    for args in (["init", "-q"], ["add", "params.yaml"], ["commit", "-qm", "p"]):
        subprocess.run([*git, *args], check=True)
    committed = lecture.committed_params(tmp_path)
    assert committed is not None and committed.experiments == tiny_params().experiments
    flip = [{"name": "HorizontalFlip", "args": {"p": 0.5}}]
    edits = {"experiments.mnist_cnn.epochs": 30, "experiments.mnist_cnn.augment": flip}
    now = tiny_params(**edits, **{"data.mnist.path": "../shared/m"})
    changed = lecture.overrides(now, committed, "mnist_cnn")
    assert changed == {**edits, "data.mnist.path": "../shared/m"}
    assert lecture.overrides(now, committed, "mnist_mlp") == {"data.mnist.path": "../shared/m"}
    assert lecture.overrides(now, None, "mnist_cnn") == {"data.mnist.path": "../shared/m"}
    assert lecture.reproduce_command("mnist_cnn", changed) == (
        "dvc exp run -S data.mnist.path=../shared/m -S experiments.mnist_cnn.epochs=30 "
        "-S 'experiments.mnist_cnn.augment=[{name: HorizontalFlip, args: {p: 0.5}}]' "
        "evaluate@mnist_cnn"
    )
