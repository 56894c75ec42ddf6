"""Clumsy and damaged input: names that collide on macOS and Windows are refused at load, and
every corrupt or truncated file nnlab reads is one line naming it."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest

from nnlab import tracking
from nnlab.config import ConfigError
from nnlab.files import load_array
from nnlab.stages import compare
from tests.conftest import TINY, tiny_params


@pytest.mark.parametrize(
    ("overrides", "first"),
    [
        ({"experiments.MNIST_mlp": TINY["experiments"]["mnist_mlp"]}, "experiments.mnist_mlp"),
        ({"features.Mnist": {"from": "mnist", "backbone": "vgg16"}}, "data.mnist"),
    ],
)
def test_names_that_differ_only_in_case_are_refused(overrides, first):
    with pytest.raises(ConfigError) as err:
        tiny_params(**overrides)
    assert f"{next(iter(overrides))}: one folder with {first} (case ignored)" in str(err.value)
    assert "\n" not in str(err.value)


def _saved(save, *args, **kwargs) -> bytes:
    """What ``np.save`` or ``np.savez`` writes."""
    buf = io.BytesIO()
    save(buf, *args, **kwargs)
    return buf.getvalue()


def _store(root) -> bytes:
    """A good MLflow store's database."""
    tracking.ensure_experiment("mnist", root / "good")
    return (root / "good/mlruns/mlflow.db").read_bytes()


REPORT, STORE = "reports/experiments/mnist_mlp", "mlruns/mlflow.db"
METRICS, NO_STORE = f"{REPORT}/metrics.json", f"{STORE}: not a readable MLflow store"
NOT_EVALUATED = f"{REPORT}: metrics.json and run.json are not what evaluate@mnist_mlp writes"
RECEIPT, COMPARE = tracking.read_receipt, lambda root: compare.run(tiny_params(), root)
ARRAY = lambda root: load_array(root / "x.npy")  # noqa: E731
OBJECTS = np.array([{}], dtype=object)  # loads only by unpickling
# a case: the file, its content (or how to make it), its reader, the line after the project folder
DAMAGED = {
    "receipt, not JSON": ("run.json", "{oops", RECEIPT, "run.json: not a valid JSON file"),
    "receipt, a list": ("run.json", "[1, 2]", RECEIPT, "run.json: not a run receipt"),
    "receipt, no run": ("run.json", '{"status": "FINISHED"}', RECEIPT, "run.json: not a run"),
    "metrics, empty": (METRICS, "{}", COMPARE, NOT_EVALUATED),
    "metrics, a word": (METRICS, '{"test/acc": "high", "test/loss": 1}', COMPARE, NOT_EVALUATED),
    "metrics, a list": (METRICS, "[]", COMPARE, NOT_EVALUATED),
    "array, truncated": ("x.npy", _saved(np.save, np.arange(1000))[:500], ARRAY, "x.npy: not a"),
    "array, empty": ("x.npy", b"", ARRAY, "x.npy: not a"),
    "array, a pickle": ("x.npy", b"\x80\x04K\x01.", ARRAY, "x.npy: not a"),
    "array, an npz": ("x.npy", _saved(np.savez, x=np.arange(3)), ARRAY, "x.npy: not a"),
    "array, objects": ("x.npy", _saved(np.save, OBJECTS, allow_pickle=True), ARRAY, "x.npy: not a"),
    "store, random bytes": (STORE, os.urandom(4096), tracking.client, NO_STORE),
    "store, truncated": (STORE, lambda root: _store(root)[:20000], tracking.client, NO_STORE),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_file_is_one_line_naming_it(tmp_path, case):
    name, content, read, expected = DAMAGED[case]
    (tmp_path / REPORT).mkdir(parents=True)  # beside metrics.json: a good evaluation receipt
    (tmp_path / REPORT / "run.json").write_text(
        '{"dataset": "mnist", "model": "mlp", "params_total": 1}'
    )
    content = content(tmp_path) if callable(content) else content
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises((ValueError, RuntimeError), match=f"^{tmp_path}/{expected}") as err:
        read(tmp_path)
    assert "\n" not in str(err.value) and "allow_pickle" not in str(err.value)


def test_a_moved_store_never_writes_into_its_old_folder(tmp_path):
    """A copied mlruns/ names the artifact folders of the project it came from: refused."""
    tracking.ensure_experiment("mnist", tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with pytest.raises(RuntimeError, match=f"keeps artifacts in {tmp_path}/a/mlruns/.*outside"):
        tracking.ensure_experiment("mnist", tmp_path / "b")


def test_evaluate_refuses_to_run_as_a_rank_other_than_0(tmp_path, monkeypatch):
    """It would write its files, log nothing and, its log being rank 0's, say nothing."""
    from nnlab.stages.evaluate import run as evaluate

    monkeypatch.setenv("SLURM_PROCID", "1")
    with pytest.raises(RuntimeError, match="evaluate@mnist_mlp runs as one process.*SLURM_PROC"):
        evaluate(tiny_params(), "mnist_mlp", tmp_path)
    assert list(tmp_path.iterdir()) == []
