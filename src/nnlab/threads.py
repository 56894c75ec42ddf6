"""CPU threads shared by the nnlab jobs running at once on one machine.

With ``loader.threads: auto`` every nnlab process takes an equal share of the cores it may use
(affinity, cgroup quota), counting the nnlab processes alive now in a registry: one file per
process in ``$NNLAB_JOBS_DIR`` (default ``/tmp/nnlab-jobs-<uid>``). Torch would otherwise start
a thread per core in every process, and parallel trainings would fight over them. Jobs come and
go, so the share is recomputed at each training epoch. An integer ``threads`` is taken as given.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from nnlab.files import read_json

INTEROP_MAX = 2  # these models gain nothing from more inter-op threads


def available_cores() -> int:
    """Cores this process may run on: CPU affinity (taskset, SLURM) and cgroup v2 quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def jobs_dir() -> Path:
    return Path(os.environ.get("NNLAB_JOBS_DIR") or f"/tmp/nnlab-jobs-{os.getuid()}")


def check_jobs_dir() -> None:
    """A ``NNLAB_JOBS_DIR`` that cannot hold the registry is refused before anything runs."""
    folder = os.environ.get("NNLAB_JOBS_DIR")
    path = Path(folder or ".")
    if folder and not (path.is_dir() or (not path.exists() and os.access(path.parent, os.W_OK))):
        raise ValueError(
            f"NNLAB_JOBS_DIR={folder}: not a folder nnlab can write its job "
            f"registry in (unset it to use /tmp/nnlab-jobs-<uid>)"
        )


def _process(pid: int) -> tuple[str | None, bool]:
    """(when ``pid`` started, in clock ticks since boot, to tell a reused pid apart; whether it
    is stopped), from one read of ``/proc/<pid>/stat``. The start is None if the process is
    gone, "" where /proc cannot tell (then alive or not is all that is known)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19], fields[0] in ("T", "t")  # stopped, or stopped by a tracer
    except FileNotFoundError:
        return None, False
    except OSError:
        pass
    try:  # no /proc
        os.kill(pid, 0)
    except ProcessLookupError:
        return None, False
    except PermissionError:
        pass
    return "", False


def register(pid: int | None = None, folder: Path | None = None) -> Path | None:
    """Record process ``pid`` (default: this one) as a live job; its file, or None when the
    registry cannot be used (then this job plans as if alone)."""
    pid = pid or os.getpid()
    folder = folder or jobs_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_uid != os.getuid():  # someone else's folder: do not trust it
            return None
        path = folder / f"{pid}.json"
        tmp = folder / f".{pid}.tmp"
        tmp.write_text(json.dumps({"pid": pid, "start": _process(pid)[0]}))
        tmp.replace(path)
    except OSError:
        return None
    return path


def unregister(pid: int | None = None, folder: Path | None = None) -> None:
    with contextlib.suppress(OSError):
        (folder or jobs_dir()).joinpath(f"{pid or os.getpid()}.json").unlink(missing_ok=True)


def live_jobs(folder: Path | None = None) -> int:
    """How many registered processes are alive and running (stale files are removed). A
    stopped job (SIGSTOP, Ctrl-Z) uses no core, so it is not counted until it resumes."""
    folder = folder or jobs_dir()
    count = 0
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            entry = read_json(path)  # a FIFO planted in the registry is refused, never read
            start, stopped = _process(int(entry["pid"]))
            alive = start is not None and start == entry["start"]
        except (OSError, ValueError, KeyError, TypeError):
            alive = stopped = False
        if alive:
            count += not stopped
        else:
            path.unlink(missing_ok=True)
    return count


def plan(
    threads: int | str = "auto",
    num_workers: int = 0,
    processes_per_node: int = 1,
    jobs: int | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """Threads and DataLoader workers for one process.

    ``auto``: the cores are split evenly between the processes alive now (``jobs``, from the
    registry when None; at least this job's ``processes_per_node``, whose siblings may not
    have registered yet); the DataLoader workers come out of this process's share (at most
    ``num_workers``, and never all of it), the intra-op threads get the rest. An integer
    ``threads`` is used as is, with ``num_workers`` as given.
    """
    cores = cores or available_cores()
    jobs = max(jobs if jobs is not None else live_jobs(), processes_per_node, 1)
    if threads != "auto":
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"loader.threads: {threads!r} is neither 'auto' nor an int >= 1")
        return {
            "threads": threads,
            "interop_threads": None,
            "num_workers": num_workers,
            "cores": cores,
            "jobs": jobs,
        }
    share = max(1, cores // jobs)
    workers = min(num_workers, share - 1)
    return {
        "threads": max(1, share - workers),
        "interop_threads": min(share, INTEROP_MAX),
        "num_workers": workers,
        "cores": cores,
        "jobs": jobs,
    }


_interop_set = False


def apply(p: dict[str, Any]) -> dict[str, Any]:
    """Set torch's threads from a plan; inter-op threads only the first time (torch allows
    it once, before any parallel work). Returns the plan."""
    global _interop_set
    import torch

    torch.set_num_threads(p["threads"])
    if p.get("interop_threads") and not _interop_set:
        _interop_set = True
        # RuntimeError: parallel work already ran in this process; torch's count stays
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(p["interop_threads"])
    return p


class ThreadSizer(Callback):
    """Registers this process as a job at setup, sizes torch's threads then and at every
    training epoch start, and unregisters at teardown or on an exception.

    ``plan`` holds the latest plan; the DataModule reads ``plan["num_workers"]`` when it
    builds its loaders (after setup). Rank 0 logs ``loader/threads`` and ``loader/jobs`` (the
    live processes counted) to the Trainer's loggers at each epoch: they change as jobs come
    and go.
    """

    def __init__(self, threads: int | str = "auto", num_workers: int = 0) -> None:
        check_jobs_dir()
        self.threads = threads
        self.num_workers = num_workers
        self.processes_per_node = 1
        self.plan: dict[str, Any] = plan(threads, num_workers, jobs=1)

    def _replan(self) -> None:
        self.plan = apply(plan(self.threads, self.num_workers, self.processes_per_node))

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.processes_per_node = max(1, len(getattr(trainer, "device_ids", [])) or 1)
        register()
        self._replan()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # the first epoch's workers are already sized; only the threads can follow the jobs
        workers = self.plan["num_workers"]
        self._replan()
        self.plan["num_workers"] = workers
        if trainer.is_global_zero:
            metrics = {"loader/threads": self.plan["threads"], "loader/jobs": self.plan["jobs"]}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        unregister()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        unregister()
