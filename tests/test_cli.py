"""The command line: one line per failure, tracebacks on request, a light import."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from nnlab import cli
from nnlab.cli import main
from nnlab.server import server_command

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "mlflow", "albumentations", "torchvision")


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def _raise(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc

    return fail


def test_one_line_without_debug(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["--params", ".", "train", "x"]) == 2
    assert _err_lines(capsys) == ["nnlab: error: .: is a folder, not a params file"]


@pytest.mark.parametrize("argv", [["--debug", "--params", ".", "train", "x"],
                                  ["--params", ".", "train", "x", "--debug"]])
def test_debug_flag_adds_the_traceback(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    lines = _err_lines(capsys)
    assert lines[0].startswith("Traceback")
    assert any("ConfigError" in line for line in lines)
    assert lines[-1] == "nnlab: error: .: is a folder, not a params file"


def test_debug_environment_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    assert main(["--params", ".", "train", "x"]) == 2
    assert _err_lines(capsys)[0].startswith("Traceback")
    monkeypatch.setenv(cli.DEBUG_ENV, "0")
    assert main(["--params", ".", "train", "x"]) == 2
    assert len(_err_lines(capsys)) == 1


@pytest.mark.parametrize(
    ("exc", "code", "expected"),
    [
        (RuntimeError("download failed:\n  mirror 1: timeout\n  mirror 2: 404"), 1,
         "nnlab: error: download failed: mirror 1: timeout; mirror 2: 404"),
        (FileNotFoundError(2, "No such file or directory", "data/split/x"), 1,
         "nnlab: error: [Errno 2] No such file or directory: 'data/split/x'"),
        (PermissionError(13, "Permission denied", "models"), 1,
         "nnlab: error: [Errno 13] Permission denied: 'models'"),
        (ValueError("bad image"), 1, "nnlab: error: bad image"),
        (KeyboardInterrupt(), 130, "nnlab: error: interrupted"),
        (KeyError("boom"), 1,
         "nnlab: error: KeyError: 'boom' (rerun with --debug for the traceback)"),
        (ZeroDivisionError(), 1, "nnlab: error: ZeroDivisionError: ZeroDivisionError (rerun"),
    ],
)
def test_failures_print_one_line(monkeypatch, capsys, exc, code, expected):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setattr(cli, "load_params", _raise(exc))
    assert main(["train", "x"]) == code
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_unexpected_error_with_debug_has_traceback_and_no_hint(monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_params", _raise(KeyError("boom")))
    assert main(["--debug", "train", "x"]) == 1
    lines = _err_lines(capsys)
    assert lines[0].startswith("Traceback") and "KeyError" in lines[-2]
    assert lines[-1] == "nnlab: error: KeyError: 'boom'"


def test_usage_errors_stay_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2


def _imported(code: str) -> list[str]:
    script = (f"import sys\n{code}\n"
              f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    return eval(out.stdout.strip().splitlines()[-1])


def test_loading_params_imports_no_heavy_library():
    code = "import nnlab.config\nnnlab.config.load_params('params.yaml')"
    assert _imported(code) == []


def test_help_imports_no_heavy_library():
    code = ("import contextlib, io, nnlab.cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    nnlab.cli.main(['--help'])")
    assert _imported(code) == []


def _server_args(**kw) -> argparse.Namespace:
    base = dict(host="127.0.0.1", port=5000, backend_store_uri=None, artifacts_destination=None,
                app_name=None, workers=None, allowed_hosts=None)
    return argparse.Namespace(**{**base, **kw})


def test_server_command_defaults(tmp_path):
    cmd = server_command(_server_args(), tmp_path)
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    store = tmp_path.resolve() / "mlruns"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{store / 'server.db'}"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(store / "server-artifacts")
    assert "--serve-artifacts" in cmd and "--app-name" not in cmd and "--workers" not in cmd
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5000"
    assert store.is_dir()  # sqlite needs the folder


def test_server_command_pass_through(tmp_path):
    cmd = server_command(_server_args(host="0.0.0.0", port=8080, app_name="basic-auth",
                                      workers="4", backend_store_uri="postgresql://db/mlflow",
                                      allowed_hosts="mlflow.lab.example",
                                      artifacts_destination="s3://bucket/mlflow"), tmp_path)
    for opt, value in (("--host", "0.0.0.0"), ("--port", "8080"), ("--app-name", "basic-auth"),
                       ("--workers", "4"), ("--backend-store-uri", "postgresql://db/mlflow"),
                       ("--allowed-hosts", "mlflow.lab.example"),
                       ("--artifacts-destination", "s3://bucket/mlflow")):
        assert cmd[cmd.index(opt) + 1] == value
    assert not (tmp_path / "mlruns").exists()


def test_server_prints_url_and_export(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["server", "--port", "5123"]) == 0
    err = capsys.readouterr().err
    assert "http://127.0.0.1:5123" in err
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:5123" in err
    assert calls and calls[0][calls[0].index("--port") + 1] == "5123"


def test_server_on_every_interface_prints_a_reachable_url(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(subprocess, "call", lambda cmd: 0)
    monkeypatch.chdir(tmp_path)
    assert main(["server", "--host", "0.0.0.0"]) == 0
    export = [line for line in capsys.readouterr().err.splitlines() if "export" in line]
    assert export and "0.0.0.0" not in export[0] and export[0].endswith(":5000")
