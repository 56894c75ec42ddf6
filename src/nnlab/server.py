"""``nnlab ui`` and ``nnlab server``: MLflow's UI and tracking server on this project's store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def ui(args: argparse.Namespace, root: Path) -> int:
    host, port = args.host, args.port
    import subprocess

    from nnlab.tracking import artifact_location, tracking_uri

    uri = tracking_uri(root)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", host, "--port", str(port)]
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        cmd += ["--default-artifact-root", artifact_location(root)]
    print(f"nnlab: MLflow UI on http://{host}:{port} (store {uri})", file=sys.stderr)
    return subprocess.call(cmd)


def server_command(args: argparse.Namespace, root: Path) -> list[str]:
    """The ``mlflow server`` command line for ``nnlab server`` (folders it needs are made)."""
    store = Path(root).resolve() / "mlruns"
    backend = args.backend_store_uri or f"sqlite:///{store / 'server.db'}"
    artifacts = args.artifacts_destination or str(store / "server-artifacts")
    if args.backend_store_uri is None:
        store.mkdir(parents=True, exist_ok=True)  # sqlite makes the file, not its folder
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
           "--artifacts-destination", artifacts, "--serve-artifacts",
           "--host", args.host, "--port", str(args.port)]
    if args.app_name:
        cmd += ["--app-name", args.app_name]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.allowed_hosts:
        cmd += ["--allowed-hosts", args.allowed_hosts]
    return cmd


def server(args: argparse.Namespace, root: Path) -> int:
    import socket
    import subprocess

    cmd = server_command(args, root)
    lan = args.host in ("0.0.0.0", "::")  # every interface: reach it by this machine's name
    url = f"http://{socket.gethostname() if lan else args.host}:{args.port}"
    store, artifacts = (cmd[cmd.index(opt) + 1]
                        for opt in ("--backend-store-uri", "--artifacts-destination"))
    print(f"nnlab: MLflow tracking server on {url} (store {store}, artifacts {artifacts})",
          file=sys.stderr)
    print(f"export MLFLOW_TRACKING_URI={url}", file=sys.stderr)
    return subprocess.call(cmd)
