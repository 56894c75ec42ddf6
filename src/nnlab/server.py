"""``nnlab ui`` and ``nnlab server``: MLflow's UI and tracking server on this project's store,
run in a process group of their own that SIGTERM and Ctrl-C stop as a whole."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from nnlab import paths, tracking
from nnlab.log import info, warn

GRACE = 10  # seconds MLflow has to stop after a signal before what is left is killed
STOP = (signal.SIGTERM, signal.SIGINT)
# MLflow 3's UI opens its GenAI view unless the URL asks for the model-training one
VIEW = {"workflowType": "machine_learning"}


def ui(args: argparse.Namespace, root: Path) -> int:
    check_address(args.host, args.port)
    uri = tracking.tracking_uri(root)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", args.host, "--port", str(args.port)]
    if artifacts := tracking.artifact_location(root):  # None: a server keeps them
        cmd += ["--default-artifact-root", artifacts]
    kind = f"tags.`{tracking.EXPERIMENT_KIND_TAG}` = '{tracking.EXPERIMENT_KIND}'"
    found = tracking.client(root).search_experiments(filter_string=kind)
    ids = sorted(e.experiment_id for e in found)
    query = {"experiments": json.dumps(ids), **VIEW} if ids else VIEW
    page = f"{'compare-experiments/s' if ids else 'experiments'}?{urlencode(query)}"
    info(f"MLflow UI on http://{args.host}:{args.port}/#/{page} (store {uri})")
    return run_group(cmd)


def server_command(args: argparse.Namespace, root: Path) -> list[str]:
    """The ``mlflow server`` command line for ``nnlab server`` (folders it needs are made)."""
    store = Path(root).resolve() / paths.MLRUNS
    backend = args.backend_store_uri or f"sqlite:///{store / paths.SERVER_DB}"
    artifacts = args.artifacts_destination or str(store / paths.SERVER_ARTIFACTS)
    if args.backend_store_uri is None:
        store.mkdir(parents=True, exist_ok=True)  # sqlite makes the file, not its folder
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
    cmd += ["--artifacts-destination", artifacts, "--serve-artifacts"]
    for option in ("host", "port", "app_name", "workers", "allowed_hosts"):
        if getattr(args, option):
            cmd += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return cmd


def server(args: argparse.Namespace, root: Path) -> int:
    check_address(args.host, args.port, args.app_name)
    cmd = server_command(args, root)
    lan = args.host in ("0.0.0.0", "::")  # every interface: reach it by this machine's name
    url = f"http://{socket.gethostname() if lan else args.host}:{args.port}"
    info(
        f"MLflow tracking server on {url} (store {cmd[cmd.index('--backend-store-uri') + 1]}, "
        f"artifacts {cmd[cmd.index('--artifacts-destination') + 1]}); on the other machines:"
    )
    info(f"export MLFLOW_TRACKING_URI={url}")
    return run_group(cmd)


def check_address(host: str, port: int, app_name: str | None = None) -> None:
    """OSError naming host:port when it cannot be listened on (taken, unknown); a warning when
    it is reachable from other machines without a login."""
    try:
        family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family) as probe:  # as MLflow's uvicorn will bind it
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address[0], port))
    except OSError as err:
        raise OSError(
            f"{host}:{port}: cannot listen there ({err.strerror}); choose another --host or --port"
        ) from None
    if not ipaddress.ip_address(address[0]).is_loopback and app_name != "basic-auth":
        warn(
            f"MLflow on {host}:{port} without --app-name basic-auth: anyone on the network "
            "can read, write and delete its runs"
        )


def run_group(cmd: list[str]) -> int:
    """Run ``cmd`` in a process group of its own that SIGTERM and SIGINT are passed to; its exit
    status once every process of the group has ended."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    forward = {s: lambda sig, _: end_group(proc.pid, sig, wait=False) for s in STOP}
    previous = {s: signal.signal(s, handler) for s, handler in forward.items()}
    try:
        return proc.wait()
    finally:  # what MLflow left running, if anything
        end_group(proc.pid, signal.SIGTERM)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def end_group(pgid: int, sig: int, wait: bool = True) -> None:
    """Send ``sig`` to process group ``pgid``; with ``wait``, return once it is empty (SIGKILL
    after GRACE seconds)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
        for tick in range((GRACE * 10 + 20) if wait else 0):
            time.sleep(0.1)
            os.killpg(pgid, signal.SIGKILL if tick == GRACE * 10 else 0)
