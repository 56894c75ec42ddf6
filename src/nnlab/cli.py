"""``nnlab`` command line: parses arguments, loads params, calls one function."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nnlab.config import PARAMS_FILE, ConfigError, load_params


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnlab", description=__doc__)
    p.add_argument("--params", default=PARAMS_FILE, help="params file (default: params.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    for cmd, arg, help_ in (
        ("download", "dataset", "fetch a dataset's raw files (or its offline fallback)"),
        ("split", "dataset", "decode, split and store a dataset as arrays"),
        ("train", "experiment", "train one experiment"),
        ("evaluate", "experiment", "score an experiment's best checkpoint on the test split"),
        ("summary", "experiment", "print a Keras-style model summary"),
        ("features", "experiment", "cache a frozen pretrained base's outputs for training"),
    ):
        sp = sub.add_parser(cmd, help=help_)
        sp.add_argument(arg)
    sub.add_parser("compare", help="table and chart of all evaluated experiments")
    sp = sub.add_parser("predict", help="predict labels for files with an experiment's model")
    sp.add_argument("experiment")
    sp.add_argument("files", nargs="+")
    sp.add_argument("--json", action="store_true", help="one JSON object per line")
    sp = sub.add_parser("ui", help="open the MLflow UI on this project's runs")
    sp.add_argument("--port", type=int, default=5000)
    sp.add_argument("--host", default="127.0.0.1")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = Path(".")
    try:
        if args.command == "ui":
            return _ui(args.host, args.port, root)
        params = load_params(args.params)
        return _run(args, params, root)
    except ConfigError as err:
        print(f"nnlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnlab: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"nnlab: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, params, root: Path) -> int:
    cmd = args.command
    if cmd == "download":
        from nnlab.data.prepare import run_download

        run_download(params, _dataset(params, args.dataset), root)
    elif cmd == "split":
        from nnlab.data.prepare import run_split

        run_split(params, _dataset(params, args.dataset), root)
    elif cmd == "features":
        from nnlab.features import run_features

        run_features(params, args.experiment, root)
    elif cmd == "train":
        from nnlab.train import train

        train(params, args.experiment, root)
    elif cmd == "evaluate":
        from nnlab.evaluate import evaluate

        evaluate(params, args.experiment, root)
    elif cmd == "compare":
        from nnlab.compare import compare

        print(compare(params, root))
    elif cmd == "summary":
        from nnlab.data.prepare import load_meta
        from nnlab.models.registry import build_model, loading_checkpoint
        from nnlab.spec import spec_from_meta
        from nnlab.summary import summary_text

        exp = params.experiment(args.experiment)
        spec = spec_from_meta(load_meta(exp.dataset, root))
        with loading_checkpoint():  # shapes and counts only: no weight download
            net = build_model(exp.model, spec, exp.model_options)
        print(summary_text(net, spec, args.experiment))
    elif cmd == "predict":
        from nnlab.predict import predict

        results = predict(params, args.experiment, args.files, root)
        for r in results:
            if args.json:
                print(json.dumps(r))
            elif "error" in r:
                print(f"{r['file']}\tERROR\t{r['error']}")
            else:
                print(f"{r['file']}\t{r['label']}\t{r['probability']:.4f}")
        return 1 if any("error" in r for r in results) else 0
    return 0


def _dataset(params, name: str) -> str:
    params.dataset(name)  # raises a ConfigError naming the known datasets
    return name


def _ui(host: str, port: int, root: Path) -> int:
    import os
    import subprocess

    from nnlab.tracking import artifact_location, tracking_uri

    uri = tracking_uri(root)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", host, "--port", str(port)]
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        cmd += ["--default-artifact-root", artifact_location(root)]
    print(f"nnlab: MLflow UI on http://{host}:{port} (store {uri})", file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
