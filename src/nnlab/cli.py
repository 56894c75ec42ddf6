"""``nnlab`` command line: argparse and one table of commands. Every expected failure is one line,
``nnlab: error: ...``, exit 2 for bad params, 130 when interrupted, 1 otherwise; ``--debug`` or
``NNLAB_DEBUG=1`` adds the traceback."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from nnlab.config import PARAMS_FILE, ConfigError, load_params
from nnlab.files import interruptible
from nnlab.log import one_line

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


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return int(text)


def _stage(args: argparse.Namespace, root: Path) -> int:
    """A stage of dvc.yaml on the item named, else on the one DVC_STAGE names: dvc.yaml's
    commands never name it, so that no params key reaches a shell."""
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
    from nnlab.predict import predict

    results = predict(load_params(args.params), args.experiment, args.files, root)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{shown(r['file'])}\tERROR\t{shown(r['error'])}")
        else:
            print(f"{shown(r['file'])}\t{r['label']}\t{r['probability']:.4f}")
    return 1 if any("error" in r for r in results) else 0


def _mlflow(args: argparse.Namespace, root: Path) -> int:
    from nnlab import server

    return getattr(server, args.command)(args, root)


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
    ui = command("ui", _mlflow, "open the MLflow UI on this project's runs")
    server = command(
        "server", _mlflow, "an MLflow tracking server that proxies artifacts (for many machines)"
    )
    for mlflow in (ui, server):
        mlflow.add_argument("--port", type=_port, default=5000)
        mlflow.add_argument(
            "--host", default="127.0.0.1", help="interface (0.0.0.0: every one, for a LAN)"
        )
    server.add_argument("--backend-store-uri", help="default: sqlite:///<project>/mlruns/server.db")
    server.add_argument(
        "--artifacts-destination", help="default: <project>/mlruns/server-artifacts"
    )
    for flag in ("--app-name", "--workers", "--allowed-hosts"):
        server.add_argument(flag, help="passed to mlflow server")
    return p


def _dashed_files(argv: list[str]) -> list[str]:
    """``nnlab predict <experiment> -x.png``: a name that starts with "-" and is none of
    predict's options is a file, passed on as ``./-x.png`` (not taken for an option)."""
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
    """``text`` for a terminal, newlines, tabs and escapes written as Python writes them, so that
    no file name can forge a line or recolour the screen."""
    return text if text.isprintable() else repr(text)[1:-1]


def run() -> None:
    """The ``nnlab`` console script: :func:`main`, then an exit that skips the interpreter's
    teardown (unloading torch, Lightning, MLflow): every file and MLflow call is done by then."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
