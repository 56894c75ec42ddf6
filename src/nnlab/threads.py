"""Torch threads and DataLoader workers sized so that concurrent nnlab jobs share the cores."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from nnlab.files import read_json, write_json


def available_cores() -> int:
    """Cores this process may run on: CPU affinity (taskset, SLURM) and cgroup v2 quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores or 1, int(quota) // int(period))
    return max(1, cores or 1)


def jobs_dir() -> Path:
    """The job registry's folder (one file per process); a ``NNLAB_JOBS_DIR`` unfit is refused."""
    folder = os.environ.get("NNLAB_JOBS_DIR")
    path = Path(folder or f"/tmp/nnlab-jobs-{os.getuid()}")
    if folder and not (path.is_dir() or (not path.exists() and os.access(path.parent, os.W_OK))):
        raise ValueError(f"NNLAB_JOBS_DIR={folder}: not a folder for the job registry; unset it")
    return path


def _process(pid: int) -> tuple[str | None, bool]:
    """(start time, telling a reused pid apart, or None if gone; whether it is stopped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None, False
    return fields[19], fields[0] in ("T", "t")  # stopped, or stopped by a tracer


def register(pid: int | None = None, folder: Path | None = None) -> Path | None:
    """Record ``pid`` (default: this one) as a live job; its file, or None (plan as if alone)."""
    pid = pid or os.getpid()
    folder = folder or jobs_dir()
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_uid == os.getuid():  # someone else's folder is not trusted
            write_json(folder / f"{pid}.json", {"pid": pid, "start": _process(pid)[0]})
            return folder / f"{pid}.json"
    return None


def unregister() -> None:
    with contextlib.suppress(OSError):
        (jobs_dir() / f"{os.getpid()}.json").unlink(missing_ok=True)


def live_jobs() -> int:
    """Registered processes alive and not stopped (using cores); dead ones' files are removed."""
    folder, count = jobs_dir(), 0
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            entry = read_json(path)  # a FIFO planted in the registry is refused, never read
            start, stopped = _process(int(entry["pid"]))
            alive = start is not None and start == entry["start"]
        except (OSError, ValueError, KeyError, TypeError):
            alive = stopped = False
        count += alive and not stopped
        if not alive:
            path.unlink(missing_ok=True)
    return count


def plan(threads="auto", num_workers=0, processes_per_node=1, jobs=None, cores=None) -> dict:
    """Threads and workers for one process; ``auto``: an even share of the cores per live job (at
    least this job's processes, maybe unregistered yet), workers out of it, never all of it."""
    cores = cores or available_cores()
    jobs = max(jobs if jobs is not None else live_jobs(), processes_per_node, 1)
    if threads == "auto":
        share = max(1, cores // jobs)
        workers = min(num_workers, share - 1)
        threads, interop = max(1, share - workers), min(share, 2)
    else:  # an int >= 1 (config.py checked it)
        workers, interop = num_workers, None
    return {"threads": threads, "interop_threads": interop, "num_workers": workers, "jobs": jobs}


def apply(p: dict[str, Any]) -> dict[str, Any]:
    """Set torch's threads from a plan (inter-op ones only where torch still allows it)."""
    torch.set_num_threads(p["threads"])
    if p["interop_threads"]:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(p["interop_threads"])
    return p


class ThreadSizer(Callback):
    """A registered job from setup to teardown (or an exception), sizing torch's threads then
    and each training epoch (logged); the DataModule's loaders take ``plan["num_workers"]``."""

    def __init__(self, threads: int | str = "auto", num_workers: int = 0) -> None:
        jobs_dir()  # a bad NNLAB_JOBS_DIR is refused before anything runs
        self.args = threads, num_workers

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.processes = len(trainer.device_ids)
        register()
        self.plan = apply(plan(*self.args, self.processes))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # the loaders' workers are already sized; only the threads can follow the jobs
        planned = plan(*self.args, self.processes)
        self.plan = apply({**planned, "num_workers": self.plan["num_workers"]})
        metrics = {"loader/threads": self.plan["threads"], "loader/jobs": self.plan["jobs"]}
        for logger in trainer.loggers:  # each logs on rank 0 only
            logger.log_metrics(metrics, step=trainer.global_step)

    def teardown(self, trainer, pl_module, stage: Any) -> None:  # or the exception
        unregister()

    on_exception = teardown  # Lightning calls no teardown hook after an exception
