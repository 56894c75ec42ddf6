"""``nnlab`` command line, and MLflow's UI and server run in a process group of their own. Each
failure is one line ``nnlab: error: ...``: exit 2 for bad params, 130 if interrupted, else 1."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from nnlab import paths
from nnlab.config import PARAMS_FILE, ConfigError, load_params
from nnlab.files import interruptible
from nnlab.log import info, one_line, warn

DEBUG_ENV = "NNLAB_DEBUG"
# the stages of dvc.yaml: what each does, and what it runs on (the <item> of train@<item>)
STAGES = {
    "download": ("fetch a dataset's raw files (or its substitute)", "dataset"),
    "split": ("decode, split and store a dataset as arrays", "dataset"),
    "features": ("run a frozen pretrained base over a dataset (features:)", "cache"),
    "train": ("train one experiment", "experiment"),
    "evaluate": ("score an experiment's best checkpoint", "experiment"),
    "compare": ("table and chart of all evaluated experiments", None),
}
GRACE = 10  # seconds MLflow has to stop after a signal before what is left is killed
STOP = (signal.SIGTERM, signal.SIGINT)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return int(text)


def _stage(args: argparse.Namespace, root: Path) -> int:
    """A stage on the item named, else DVC_STAGE's (dvc.yaml's commands pass no params key)."""
    params = load_params(args.params)
    stage = importlib.import_module(f"nnlab.stages.{args.command}")
    what = STAGES[args.command][1]
    if what is None:
        print(stage.run(params, root))
        return 0
    dvc_stage = os.environ.get("DVC_STAGE", "")  # [dvc.yaml:]train@<experiment>
    name, _, item = dvc_stage.rpartition(":")[2].partition("@")
    if args.item is None and (name != args.command or not item):
        raise ValueError(
            f"nnlab {args.command}: name the {what} (DVC_STAGE is {dvc_stage!r}, "
            f"not {args.command}@<{what}>)"
        )
    stage.run(params, args.item or item, root)
    return 0


def _summary(args: argparse.Namespace, root: Path) -> int:
    from nnlab.summary import summarize

    print(summarize(load_params(args.params), args.experiment, root))
    return 0


def _predict(args: argparse.Namespace, root: Path) -> int:
    from nnlab.serving import predict

    results = predict(load_params(args.params), args.experiment, args.files, root)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{shown(r['file'])}\tERROR\t{shown(r['error'])}")
        else:
            print(f"{shown(r['file'])}\t{r['label']}\t{r['probability']:.4f}")
    return 1 if any("error" in r for r in results) else 0


def ui(args: argparse.Namespace, root: Path) -> int:
    from nnlab import tracking  # MLflow: not for the other commands

    check_address(args.host, args.port)
    uri = tracking.tracking_uri(root)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", args.host, "--port", str(args.port)]
    if artifacts := tracking.artifact_location(root):  # None: a server keeps them
        cmd += ["--default-artifact-root", artifacts]
    kind = f"tags.`{tracking.EXPERIMENT_KIND_TAG}` = '{tracking.EXPERIMENT_KIND}'"
    found = tracking.client(root).search_experiments(filter_string=kind)
    ids = sorted(e.experiment_id for e in found)
    query = {"experiments": json.dumps(ids)} if ids else {}
    query["workflowType"] = "machine_learning"  # MLflow 3's UI: the training view, not GenAI
    page = f"{'compare-experiments/s' if ids else 'experiments'}?{urlencode(query)}"
    info(f"MLflow UI on http://{args.host}:{args.port}/#/{page} (store {uri})")
    return run_group(cmd)


def server(args: argparse.Namespace, root: Path) -> int:
    """``mlflow server`` on ``mlruns/`` (its folder made), proxying artifacts."""
    check_address(args.host, args.port, args.app_name)
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
    lan = args.host in ("0.0.0.0", "::")  # every interface: reach it by this machine's name
    url = f"http://{socket.gethostname() if lan else args.host}:{args.port}"
    info(
        f"MLflow tracking server on {url} (store {backend}, artifacts {artifacts}); on the other "
        f"machines:\nexport MLFLOW_TRACKING_URI={url}"
    )
    return run_group(cmd)


def check_address(host: str, port: int, app_name: str | None = None) -> None:
    """OSError naming host:port if it cannot be listened on; a warning if open to others."""
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
    """``cmd``'s exit status, run in a group of its own that gets SIGTERM and SIGINT, once empty."""
    proc = subprocess.Popen(cmd, start_new_session=True)
    previous = {s: signal.signal(s, lambda n, _: end_group(proc.pid, n, False)) for s in STOP}
    try:
        return proc.wait()
    finally:  # what MLflow left running, if anything
        end_group(proc.pid, signal.SIGTERM)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def end_group(pgid: int, sig: int, wait: bool = True) -> None:
    """Send ``sig`` to group ``pgid``; with ``wait``, return once empty (SIGKILL after GRACE s)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
        for tick in range((GRACE * 10 + 20) if wait else 0):
            time.sleep(0.1)
            os.killpg(pgid, signal.SIGKILL if tick == GRACE * 10 else 0)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    debug = f"show tracebacks (or {DEBUG_ENV}=1)"
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    p = argparse.ArgumentParser(prog="nnlab", description="nnlab command line", parents=[common])
    p.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, run: Callable, help_: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_, parents=[common])
        parser.set_defaults(run=run)
        return parser

    for name, (help_, what) in STAGES.items():
        stage = command(name, _stage, help_)
        if what:
            stage.add_argument(
                "item", nargs="?", metavar=what, help=f"default: the <{what}> of DVC_STAGE"
            )
    command("summary", _summary, "print a Keras-style model summary").add_argument("experiment")
    predict = command("predict", _predict, "predict labels for files with an experiment's model")
    predict.add_argument("experiment")
    predict.add_argument("files", nargs="+", help="image or text files (after --, any name)")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    ui_ = command("ui", ui, "open the MLflow UI on this project's runs")
    server_ = command("server", server, "an MLflow tracking server proxying artifacts (a LAN's)")
    for mlflow in (ui_, server_):
        mlflow.add_argument("--port", type=_port, default=5000)
        mlflow.add_argument("--host", default="127.0.0.1", help="0.0.0.0: every interface")
    server_.add_argument("--backend-store-uri", help="default: sqlite:///mlruns/server.db")
    server_.add_argument("--artifacts-destination", help="default: mlruns/server-artifacts")
    for flag in ("--app-name", "--workers", "--allowed-hosts"):
        server_.add_argument(flag, help="passed to mlflow server")
    return p


def _dashed_files(argv: list[str]) -> list[str]:
    """``nnlab predict <experiment> -x.png``: a "-name" none of predict's options is ``./-name``."""
    argv = list(argv)
    start = argv.index("predict") + 1 if "predict" in argv else len(argv)
    end = argv.index("--", start) if "--" in argv[start:] else len(argv)
    for i in range(start, end):
        if argv[i].startswith("-") and argv[i] not in ("--json", "--debug", "-h", "--help"):
            argv[i] = f"./{argv[i]}"
    return argv


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_dashed_files(sys.argv[1:] if argv is None else argv))
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if not debug:  # two notes no user can act on: Lightning's advert, a torch deprecation
        logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
            lambda record: not str(record.msg).startswith("💡 Tip")
        )
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
    try:
        with interruptible():  # SIGTERM runs every clean-up, as Ctrl-C does
            return args.run(args, Path("."))
    except (KeyboardInterrupt, Exception) as err:
        if debug:
            traceback.print_exception(err)
        message = one_line(err, sys.maxsize) or type(err).__name__
        if isinstance(err, KeyboardInterrupt):
            message, code = "interrupted", 130
        elif not isinstance(err, ValueError | RuntimeError | OSError):  # ConfigError among them
            hint = "" if debug else " (rerun with --debug for the traceback)"
            message, code = f"{type(err).__name__}: {message}{hint}", 1
        else:
            code = 2 if isinstance(err, ConfigError) else 1
    print(f"nnlab: error: {shown(message)}", file=sys.stderr)
    return code


def shown(text: str) -> str:
    """``text`` with newlines, tabs and escapes as Python writes them: no forged line or colour."""
    return text if text.isprintable() else repr(text)[1:-1]


def run() -> None:
    """``nnlab``: :func:`main`, then exit skipping the teardown (unloading torch, MLflow: slow)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
