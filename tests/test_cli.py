"""The command line: one line per failure, tracebacks on request, the MLflow server and UI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest

from nnlab import cli, tracking
from nnlab.cli import main
from tests.conftest import REPO, free_port


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


HINT = " (rerun with --debug for the traceback)"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("failed:\n  a: timeout\n  b: 404"), "failed: a: timeout; b: 404"),
        (PermissionError(13, "denied", "models"), "[Errno 13] denied: 'models'"),
        # a file name can neither forge a line nor send escape sequences to the terminal
        (FileNotFoundError("x\ny\x1b[31m.png: no such file"), "x; y\\x1b[31m.png: no such file"),
        (KeyboardInterrupt(), "interrupted"),
        (ZeroDivisionError(), "ZeroDivisionError: ZeroDivisionError" + HINT),
    ],
)
def test_failures_print_one_line(monkeypatch, capsys, exc, expected):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setattr(cli, "load_params", mock.Mock(side_effect=exc))
    assert main(["train", "x"]) == (130 if isinstance(exc, KeyboardInterrupt) else 1)
    assert _err_lines(capsys) == [f"nnlab: error: {expected}"]


@pytest.mark.parametrize(
    ("argv", "env", "traceback"),
    [
        (["train", "x"], "", False),
        (["--debug", "train", "x"], "", True),
        (["train", "x", "--debug"], "", True),
        (["train", "x"], "1", True),
        (["train", "x"], "0", False),
    ],
)
def test_the_traceback_on_request_and_then_no_hint(monkeypatch, capsys, argv, env, traceback):
    monkeypatch.setenv(cli.DEBUG_ENV, env)
    monkeypatch.setattr(cli, "load_params", mock.Mock(side_effect=KeyError("boom")))
    assert main(argv) == 1
    lines = _err_lines(capsys)
    assert lines[-1] == "nnlab: error: KeyError: 'boom'" + ("" if traceback else HINT)
    assert lines[0].startswith("Traceback") is traceback and (len(lines) == 1) is not traceback


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["no-such-command"], "invalid choice"),
        (["server", "--port", "99999"], "'99999' is not a port (1 to 65535)"),
        (["ui", "--port", "-1"], "'-1' is not a port"),
    ],
)
def test_usage_errors_stay_argparse(capsys, argv, said):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and said in capsys.readouterr().err


def test_server_stores_runs_and_artifacts_in_the_project(started, tmp_path):
    assert cli._parser().parse_args(["server"]).port == 5000
    port = str(free_port())
    assert main(["server", "--port", port]) == 0
    cmd = started[0]
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    store = tmp_path.resolve() / "mlruns"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{store / 'server.db'}"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(store / "server-artifacts")
    assert "--serve-artifacts" in cmd and "--app-name" not in cmd
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == port
    assert store.is_dir()  # sqlite needs the folder


@pytest.fixture
def started(monkeypatch, tmp_path) -> list[list[str]]:
    """The commands nnlab would start (nothing is started)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "run_group", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.chdir(tmp_path)
    return calls


@pytest.mark.parametrize(
    ("argv", "shown", "warned"),
    [
        (["--host", "127.0.0.1"], "127.0.0.1", False),
        (["--host", "0.0.0.0"], socket.gethostname(), True),  # anyone on the network
        (["--host", "0.0.0.0", "--app-name", "basic-auth"], socket.gethostname(), False),
    ],
)
def test_server_prints_the_url_to_export(started, capsys, argv, shown, warned):
    port = str(free_port())
    assert main(["server", *argv, "--port", port]) == 0
    err = capsys.readouterr().err
    assert f"export MLFLOW_TRACKING_URI=http://{shown}:{port}\n" in err
    assert started[0][started[0].index("--port") + 1] == port
    assert ("anyone on the network can read, write and delete" in err) is warned


@pytest.mark.parametrize("command", ["server", "ui"])
def test_a_busy_port_is_one_line_before_mlflow_starts(started, capsys, command):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main([command, "--port", str(port)]) == 1
    assert _err_lines(capsys) == [
        f"nnlab: error: 127.0.0.1:{port}: cannot listen there (Address already in use); "
        "choose another --host or --port"
    ]
    assert started == []


def test_ui_prints_the_url_of_the_runs_in_the_model_training_view(started, capsys):
    ids = sorted(tracking.ensure_experiment(name, Path(".")) for name in ("mnist", "imdb"))
    assert main(["ui", "--port", str(free_port())]) == 0
    url = next(w for w in capsys.readouterr().err.split() if w.startswith("http://"))
    page, _, query = urlsplit(url).fragment.partition("?")
    assert page == "/compare-experiments/s"
    assert parse_qs(query) == {
        "experiments": [json.dumps(ids)],
        "workflowType": ["machine_learning"],
    }


@pytest.mark.slow
def test_sigterm_stops_every_process_of_the_server(tmp_path):
    """MLflow's uvicorn workers, job runner and huey consumers, in a process group of their own,
    end with `nnlab server`."""
    import psutil

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab.cli", "server", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while True:  # until MLflow answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        started = psutil.Process(proc.pid).children(recursive=True)
        assert len(started) >= 3 and {os.getpgid(p.pid) for p in started} == {started[0].pid}
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert psutil.wait_procs(started, timeout=0)[1] == []  # none left
    finally:
        proc.kill()
        for p in started:
            with contextlib.suppress(psutil.Error):
                p.kill()
