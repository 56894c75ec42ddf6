"""A real 2-process DDP run on the CPU, through the CLI in a subprocess (as `dvc repro` runs it).

Lightning relaunches the command for rank 1; only rank 0 may write files or MLflow records.
"""

import subprocess

import pytest
import yaml

from nnlab import tracking
from tests.conftest import BIN, TINY, cli_env


@pytest.mark.slow
def test_ddp_two_processes_one_run_one_set_of_files(project):
    raw = {**TINY, "trainer": {**TINY["trainer"], "devices": 2, "strategy": "ddp"}}
    raw["experiments"] = {"mnist_cnn": TINY["experiments"]["mnist_cnn"]}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [str(BIN / "nnlab"), "train", "mnist_cnn"],
        cwd=project,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr or "Initializing distributed: GLOBAL_RANK: 1" in (
        proc.stdout + proc.stderr
    )
    ours = [line for line in proc.stderr.splitlines() if line.startswith("nnlab")]
    assert ours and len(ours) == len(set(ours)), ours  # each message once, not once per rank
    model_dir = project / "models/mnist_cnn"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "best.ckpt",
        "history.csv",
        "last.ckpt",
        "run.json",
        "summary.txt",
    ]
    receipt = tracking.read_receipt(model_dir)
    assert receipt["devices"] == 2 and receipt["strategy"] == "DDPStrategy"
    client = tracking.client(root=project)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [receipt["run_id"]]
    # per-epoch metrics were logged once (rank 0), not once per rank
    assert len(client.get_metric_history(receipt["run_id"], "val/acc")) == 2
