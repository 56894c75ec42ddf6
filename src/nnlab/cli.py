"""``nnlab`` command line: parses arguments, loads params, calls one function.

Every expected failure prints one line, ``nnlab: error: ...``, and exits nonzero (2 for bad
params, 130 when interrupted, 1 otherwise). ``--debug`` or ``NNLAB_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from nnlab.config import PARAMS_FILE, ConfigError, load_params
from nnlab.files import interruptible

DEBUG_ENV = "NNLAB_DEBUG"
EXPECTED = (ConfigError, FileNotFoundError, ValueError, RuntimeError, OSError)


STAGES = {  # dvc.yaml's stages: command -> (the item it names, help)
    "download": ("dataset", "fetch a dataset's raw files (or its offline substitute)"),
    "split": ("dataset", "decode, split and store a dataset as arrays"),
    "features": ("cache", "run a frozen pretrained base once over a dataset (features:)"),
    "train": ("experiment", "train one experiment"),
    "evaluate": ("experiment", "score an experiment's best checkpoint on the test split"),
    "compare": (None, "table and chart of all evaluated experiments"),
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show tracebacks (or set {DEBUG_ENV}=1)",
    )
    p = argparse.ArgumentParser(
        prog="nnlab", description=__doc__.split("\n")[0].replace("``", ""), parents=[common]
    )
    p.add_argument("--params", default=PARAMS_FILE, help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    for cmd, (item, help_) in STAGES.items():
        sp = sub.add_parser(cmd, help=help_, parents=[common])
        if item:
            sp.add_argument(
                "item",
                nargs="?",
                metavar=item,
                help=f"default: the <{item}> of DVC_STAGE={cmd}@<{item}>",
            )
    sp = sub.add_parser("summary", help="print a Keras-style model summary", parents=[common])
    sp.add_argument("experiment")
    sp = sub.add_parser(
        "predict", help="predict labels for files with an experiment's model", parents=[common]
    )
    sp.add_argument("experiment")
    sp.add_argument(
        "files",
        nargs="+",
        help="image or text files (after --, any name: nnlab predict <experiment> -- -x.png)",
    )
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp = sub.add_parser("ui", help="open the MLflow UI on this project's runs", parents=[common])
    sp.add_argument("--port", type=_port, default=5000)
    sp.add_argument("--host", default="127.0.0.1")
    sp = sub.add_parser(
        "server",
        parents=[common],
        help="an MLflow tracking server that proxies artifacts (for many machines)",
    )
    sp.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one, for a LAN)"
    )
    sp.add_argument("--port", type=_port, default=5000)
    sp.add_argument(
        "--backend-store-uri",
        default=None,
        help="runs and metrics (default: sqlite:///<project>/mlruns/server.db)",
    )
    sp.add_argument(
        "--artifacts-destination",
        default=None,
        help="where artifacts go: a folder or a URI (default: <project>/mlruns/server-artifacts)",
    )
    sp.add_argument("--app-name", default=None, help="passed to mlflow server (e.g. basic-auth)")
    sp.add_argument("--workers", default=None, help="passed to mlflow server")
    sp.add_argument(
        "--allowed-hosts",
        default=None,
        help="passed to mlflow server: Host headers it answers besides localhost "
        "and private IPs (e.g. a DNS name)",
    )
    return p


def _dashed_files(argv: list[str]) -> list[str]:
    """``nnlab predict <experiment> -x.png``: a name that starts with "-" and is none of
    predict's options is a file, given to the parser as ``./-x.png`` (argparse would take it
    for an unknown option and ask for the files)."""
    if "predict" not in argv:
        return argv
    start = argv.index("predict") + 1
    end = argv.index("--", start) if "--" in argv[start:] else len(argv)
    options = ("--json", "--debug", "-h", "--help")
    return [
        *argv[:start],
        *(f"./{a}" if a.startswith("-") and a not in options else a for a in argv[start:end]),
        *argv[end:],
    ]


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return int(text)


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _one_line(err: BaseException) -> str:
    text = ""
    for line in filter(None, (line.strip() for line in str(err).splitlines())):
        text += (" " if text.endswith(":") else "; ") + line if text else line
    return text or type(err).__name__


class _DropAdvert(logging.Filter):
    """Lightning's "💡 Tip: ... try installing litlogger" line, printed by every Trainer."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_library_noise() -> None:
    """Two lines that every training or evaluation stage would print and no user can act on:
    Lightning's advert for its cloud logger, and the deprecation warning Lightning's own
    ``_pytree`` module triggers in torch. ``--debug`` keeps them."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdvert())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_dashed_files(sys.argv[1:] if argv is None else argv))
    debug = _debug(args)
    if not debug:
        quiet_library_noise()
    try:
        with interruptible():  # SIGTERM runs every clean-up, as Ctrl-C does
            return _run(args, Path("."))
    except (KeyboardInterrupt, Exception) as err:
        message, code = _failure(err, debug)
        if debug:
            traceback.print_exception(err)
        print(f"nnlab: error: {shown(message)}", file=sys.stderr)
        return code


def _failure(err: BaseException, debug: bool) -> tuple[str, int]:
    """The one line and the exit status for an exception."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(err, EXPECTED):
        return _one_line(err), 2 if isinstance(err, ConfigError) else 1
    hint = "" if debug else " (rerun with --debug for the traceback)"
    return f"{type(err).__name__}: {_one_line(err)}{hint}", 1


def _run(args: argparse.Namespace, root: Path) -> int:
    cmd = args.command
    if cmd in ("ui", "server"):
        from nnlab import server

        return getattr(server, cmd)(args, root)
    params = load_params(args.params)
    if cmd in STAGES:
        stage = importlib.import_module(f"nnlab.stages.{cmd}")
        item = STAGES[cmd][0]
        if item is None:
            print(stage.run(params, root))
        else:
            stage.run(params, args.item or stage_item(cmd, item), root)
    elif cmd == "summary":
        from nnlab.summary import summarize

        print(summarize(params, args.experiment, root))
    elif cmd == "predict":
        return _predict(params, args, root)
    return 0


def _predict(params, args: argparse.Namespace, root: Path) -> int:
    from nnlab.predict import predict

    results = predict(params, args.experiment, args.files, root)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{shown(r['file'])}\tERROR\t{shown(r['error'])}")
        else:
            print(f"{shown(r['file'])}\t{r['label']}\t{r['probability']:.4f}")
    return 1 if any("error" in r for r in results) else 0


def shown(text: str) -> str:
    """``text`` for a terminal: a name's newlines, tabs and escape sequences as Python writes
    them, so that no file name can forge a line or recolour the screen."""
    return text if text.isprintable() else repr(text)[1:-1]


def stage_item(cmd: str, what: str) -> str:
    """The item of stage ``cmd@<item>`` that ``dvc repro`` runs, from DVC_STAGE (set by DVC,
    ``[dvc.yaml:]train@<experiment>``): dvc.yaml's commands never name it, so that no params
    key reaches a shell."""
    stage = os.environ.get("DVC_STAGE", "")
    name, _, item = stage.rpartition(":")[2].partition("@")
    if name != cmd or not item:
        raise ValueError(
            f"nnlab {cmd}: name the {what} (DVC_STAGE is {stage!r}, not {cmd}@<{what}>)"
        )
    return item


def run() -> None:
    """The ``nnlab`` console script: :func:`main`, then an exit that skips the interpreter's
    teardown (unloading torch, Lightning and MLflow), which every stage process would pay:
    by then every file is written atomically and every MLflow call has returned."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
