"""A 2-process CPU DDP run through the CLI: only rank 0 writes files or MLflow records."""

import pytest
import yaml

from nnlab import tracking
from tests.conftest import BIN, TINY, cli_env, run_ok


@pytest.mark.slow
def test_ddp_two_processes_one_run_one_set_of_files(project):
    raw = {**TINY, "trainer": {**TINY["trainer"], "devices": 2, "strategy": "ddp"}}
    raw["experiments"] = {"mnist_cnn": TINY["experiments"]["mnist_cnn"]}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    out = run_ok([str(BIN / "nnlab"), "train", "mnist_cnn"], project, cli_env(), timeout=300)
    assert "GLOBAL_RANK: 1" in out
    ours = [line for line in out.splitlines() if line.startswith("nnlab")]
    assert ours and len(ours) == len(set(ours)), ours  # each message once, not once per rank
    model_dir = project / "models/mnist_cnn"
    files = {"best.ckpt", "history.csv", "last.ckpt", "run.json", "summary.txt"}
    assert {p.name for p in model_dir.iterdir()} == files
    receipt = tracking.read_receipt(model_dir)
    assert receipt["devices"] == 2 and receipt["strategy"] == "DDPStrategy"
    client = tracking.client(root=project)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [receipt["run_id"]]
    # per-epoch metrics were logged once (rank 0), not once per rank
    assert len(client.get_metric_history(receipt["run_id"], "val/acc")) == 2
