"""Hostile files never run code: checkpoints are read as tensors and plain data only, no params
key reaches DVC's shell, and a FIFO, device or socket where a file is expected is never opened."""

import contextlib
import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from nnlab import tracking
from nnlab.cli import main
from nnlab.config import load_params
from nnlab.files import UnsafeCheckpointError, file_digest, load_array, load_checkpoint, read_json
from nnlab.models.backbones import read_state
from nnlab.serving import predict
from nnlab.stages.train import run as train
from tests.conftest import TINY, cli_env, copy_repo, params_text, run_ok, tiny_params


class _Runs:
    def __init__(self, marker: Path):  # unpickling this runs ``touch <marker>``
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path, like: Path | None = None) -> None:
    """A checkpoint at ``path`` (``like``'s content, if given) that runs code when unpickled."""
    content = torch.load(like, weights_only=True) if like else {"state_dict": {}}
    torch.save({**content, "payload": _Runs(marker)}, path)


@pytest.fixture
def trained(project, monkeypatch):
    monkeypatch.chdir(project)
    params = tiny_params()
    (project / "params.yaml").write_text(params_text(params))
    train(params, "mnist_mlp", project)
    return project


@pytest.mark.parametrize("command", ["evaluate", "predict", "train"])
def test_a_hostile_checkpoint_is_refused_by_evaluate_predict_and_a_resuming_train(
    trained, tmp_path, capsys, command
):
    marker, model_dir = tmp_path / "ran", trained / "models/mnist_mlp"
    ckpt = model_dir / ("last.ckpt" if command == "train" else "best.ckpt")
    if command == "train":  # an interrupted run: train would resume from last.ckpt
        receipt = json.loads((model_dir / "run.json").read_text())
        (model_dir / "run.json").write_text(json.dumps({**receipt, "status": "RUNNING"}))
    _plant(ckpt, marker, like=ckpt)
    before = sorted(p.name for p in model_dir.iterdir())
    assert main([command, "mnist_mlp"] + (["digit.png"] if command == "predict" else [])) == 1
    err = capsys.readouterr().err.strip()
    assert not marker.exists() and len(err.splitlines()) == 1
    assert f"{ckpt.name}: refused" in err and "tensors and plain data" in err
    assert sorted(p.name for p in model_dir.iterdir()) == before  # nothing deleted


def test_weight_files_and_truncated_checkpoints_are_one_line_naming_the_file(tmp_path):
    marker, evil = tmp_path / "ran", tmp_path / "weights.pt"
    _plant(evil, marker)
    for reader in (read_state, load_checkpoint):
        with pytest.raises(UnsafeCheckpointError, match="weights.pt: refused"):
            reader(evil)
    assert not marker.exists()
    good, cut = tmp_path / "good.ckpt", tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, good)
    for junk in (good.read_bytes()[:2000], b"hello", b"\x80"):  # truncated, not even a pickle
        cut.write_bytes(junk)
        with pytest.raises(ValueError, match="cut.ckpt: not a readable checkpoint"):
            load_checkpoint(cut)


HOSTILE_KEYS = [
    "x;touch {m};echo",
    "y$(touch {m})",
    "z`touch {m}`",
    "q'$(touch {m})'",
    'd"; touch {m}; "',
    "n\ntouch {m}",
]


@pytest.mark.slow
def test_no_experiment_key_reaches_a_shell_under_dvc_repro(tmp_path):
    """Upstream stages cached, then experiments whose keys are shell code: none of it runs."""
    root, marker, env = copy_repo(tmp_path / "repo"), tmp_path / "ran", cli_env()
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["data"] = {"mnist": {**raw["data"]["mnist"], "source": "bundled", "max_samples": 400}}
    raw["features"], raw["experiments"] = {}, {}

    def run(*cmd):
        return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)

    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    for cmd in (["git", "init", "-q"], ["dvc", "repro", "split@mnist"]):
        run_ok(cmd, root, env, timeout=300)
    for key in HOSTILE_KEYS:
        key = key.format(m=marker)
        exps = {key: TINY["experiments"]["mnist_mlp"]}
        (root / "params.yaml").write_text(yaml.safe_dump({**raw, "experiments": exps}))
        assert run("dvc", "status", f"train@{key}").returncode == 0  # DVC takes the key
        proc = run("dvc", "repro", f"train@{key}")
        assert proc.returncode != 0, key
        assert not marker.exists(), f"{key!r} ran: {proc.stdout}{proc.stderr}"


@pytest.fixture
def special_files(tmp_path):
    """A FIFO, a device and a socket, each where a file is expected."""
    fifo, sock = tmp_path / "pipe.png", tmp_path / "sock.png"
    os.mkfifo(fifo)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock))
        yield {"FIFO": fifo, "device": Path("/dev/zero"), "socket": sock}
    with contextlib.suppress(OSError):  # a reader stuck in open() (the bug) gets its EOF
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def within(seconds: float, fn, *args):
    """What ``fn(*args)`` returns or raises within ``seconds`` (opening a FIFO would block)."""
    box = []

    def call():
        try:
            box.append(fn(*args))
        except Exception as err:
            box.append(err)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"{fn.__name__}{args} blocked"
    return box[0]


@pytest.mark.parametrize(
    "reader", [read_json, load_checkpoint, read_state, load_array, file_digest, load_params]
)
def test_a_fifo_a_device_or_a_socket_is_refused_never_opened(special_files, reader):
    for path in special_files.values():
        err = within(10, reader, path)
        assert isinstance(err, OSError | ValueError), err
        assert str(path) in str(err) and "\n" not in str(err)


def test_predict_refuses_a_fifo_a_device_and_a_socket_beside_a_good_file(trained, special_files):
    Image.new("L", (28, 28)).save(trained / "digit.png")
    files = [*map(str, special_files.values()), str(trained / "digit.png")]
    results = within(60, predict, tiny_params(), "mnist_mlp", files)
    assert "label" in results[-1]
    for path, kind, r in zip(files, special_files, results, strict=False):
        assert path in r["error"] and kind.lower() in r["error"].lower(), r


def test_mlflow_is_never_given_a_fifo_a_device_or_a_socket_to_copy(tmp_path, special_files):
    run_id = tracking.make_logger("mnist_mlp", "mnist", {}, tmp_path).run_id
    for path in special_files.values():
        err = within(10, tracking.log_to_run, {"run_id": run_id}, None, [path], None, tmp_path)
        assert isinstance(err, OSError) and str(path) in str(err)
