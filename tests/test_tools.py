"""The analysis tools under tools/ that the docs quote."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mcnemar_exact_is_the_two_sided_binomial_tail():
    mcnemar_exact = _load("paired_test").mcnemar_exact
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(2, 0) == 0.5  # fine-tuning vs features on the real photos
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(10, 0) == mcnemar_exact(0, 10)  # symmetric
    assert mcnemar_exact(5, 5) == 1.0
    # 12 against 3: P(X <= 3) for X ~ Bin(15, 1/2), doubled
    tail = sum(math.comb(15, k) for k in range(4)) / 2**15
    assert mcnemar_exact(12, 3) == pytest.approx(2 * tail)
    assert mcnemar_exact(12, 3) < 0.05 < mcnemar_exact(9, 4)
