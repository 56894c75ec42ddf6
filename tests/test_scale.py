"""Outgrowing one machine.

Fast: thread sizing (``nnlab.threads``): the plan and the registry of live jobs.
Slow (``-m slow``, through the CLI as users run it): two nodes over gloo on 127.0.0.1, a DVC
remote round trip into a fresh clone, queued and ``--temp`` DVC experiments landing in the
project's MLflow store, and two clones training against one MLflow tracking server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnlab import threads


@pytest.fixture
def jobs(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "jobs"
    monkeypatch.setenv("NNLAB_JOBS_DIR", str(folder))
    return folder


@pytest.fixture
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


@pytest.mark.parametrize(
    ("cores", "jobs_alive", "workers", "expected"),
    [
        (2, 1, 0, (2, 2, 0)),   # alone: every core
        (2, 2, 0, (1, 1, 0)),   # two jobs on two cores: one each, not two each
        (8, 3, 0, (2, 2, 0)),
        (8, 1, 2, (6, 2, 2)),   # workers come out of the share
        (8, 2, 8, (1, 2, 3)),   # ... but never all of it
        (2, 5, 4, (1, 1, 0)),   # more jobs than cores: one thread, no workers
    ],
)
def test_auto_plan_splits_the_cores_between_live_jobs(cores, jobs_alive, workers, expected):
    p = threads.plan("auto", workers, jobs=jobs_alive, cores=cores)
    assert (p["threads"], p["interop_threads"], p["num_workers"]) == expected
    assert p["threads"] + p["num_workers"] <= max(cores // jobs_alive, 1)


def test_processes_per_node_count_before_the_siblings_register():
    assert threads.plan("auto", 0, processes_per_node=4, jobs=1, cores=8)["threads"] == 2
    assert threads.plan("auto", 0, processes_per_node=2, jobs=6, cores=12)["threads"] == 2


def test_an_explicit_thread_count_is_taken_as_given():
    p = threads.plan(3, 2, jobs=4, cores=2)
    assert (p["threads"], p["interop_threads"], p["num_workers"]) == (3, None, 2)
    for bad in (0, -1, True, "4", 2.0):
        with pytest.raises(ValueError, match="loader.threads"):
            threads.plan(bad, 0, jobs=1, cores=2)


def test_registry_counts_live_processes_and_drops_stale_ones(jobs):
    assert threads.live_jobs() == 0  # no folder yet
    threads.register()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        threads.register(sleeper.pid)
        threads.register(dead := _dead_pid())
        # a live pid whose start time differs: the pid was reused after its job died
        reused = jobs / f"{os.getppid()}.json"
        reused.write_text(json.dumps({"pid": os.getppid(), "start": "1"}))
        (jobs / "junk.json").write_text("{not json")
        assert threads.live_jobs() == 2
        assert sorted(p.name for p in jobs.glob("*.json")) == sorted(
            [f"{os.getpid()}.json", f"{sleeper.pid}.json"])
        assert not (jobs / f"{dead}.json").exists()
        assert threads.plan("auto", 0, cores=4)["threads"] == 2
    finally:
        sleeper.kill()
        sleeper.wait(timeout=60)
    assert threads.live_jobs() == 1  # the sleeper is gone
    threads.unregister()
    assert threads.live_jobs() == 0


def test_a_folder_owned_by_someone_else_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    assert threads.register(folder=tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_apply_sets_torch_threads(keep_torch_threads):
    p = threads.apply(threads.plan("auto", 0, jobs=1, cores=1))
    assert torch.get_num_threads() == p["threads"] == 1


class _Seen(threads.Callback):
    """Records what the sizer saw at each epoch (after it ran: callbacks run in order)."""

    def __init__(self, sizer):
        self.sizer, self.seen = sizer, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append((threads.live_jobs(), torch.get_num_threads(), dict(self.sizer.plan)))
        if trainer.current_epoch == 0:  # another job starts during epoch 0
            threads.register(self.other.pid)


def _fit(callbacks, epochs=2, model=None):
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, limit_train_batches=2,
                        limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=callbacks)
    trainer.fit(model or BoringModel())


def test_sizer_registers_replans_each_epoch_and_unregisters(jobs, keep_torch_threads,
                                                            monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    sizer = threads.ThreadSizer("auto", num_workers=0)
    seen = _Seen(sizer)
    seen.other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _fit([sizer, seen])
    finally:
        seen.other.kill()
        seen.other.wait(timeout=60)
    (jobs0, threads0, plan0), (jobs1, threads1, plan1) = seen.seen
    assert (jobs0, threads0, plan0["threads"]) == (1, 4, 4)
    assert (jobs1, threads1, plan1["threads"]) == (2, 2, 2)  # the other job took half
    assert not (jobs / f"{os.getpid()}.json").exists()


def test_sizer_unregisters_when_training_fails(jobs, keep_torch_threads):
    from lightning.pytorch.demos.boring_classes import BoringModel

    class Broken(BoringModel):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _fit([threads.ThreadSizer("auto")], model=Broken())
    assert threads.live_jobs() == 0
