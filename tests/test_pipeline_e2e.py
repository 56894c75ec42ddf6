"""End to end: the real dvc.yaml in a temporary git repo, shrunk through params only."""

import pytest
import yaml

from nnlab import tracking
from nnlab.files import read_json
from tests.conftest import BIN, cli_env, copy_repo, run_ok, stages_ran
from tests.http_server import dead_url

pytestmark = pytest.mark.slow


def shrink(raw: dict) -> dict:
    """Tiny, offline, fast: every dataset falls back loudly, every experiment runs 1 epoch."""
    dead = dead_url()
    for cfg in raw["data"].values():
        cfg.update(source="auto", mirrors=[dead], path=None, retries=0, timeout=2)
        cfg["max_samples"] = 200
        if "synthetic_size" in cfg:
            cfg["synthetic_size"] = 120
        if "image_size" in cfg:
            cfg["image_size"] = cfg["synthetic_image_size"] = 32
        if "split_sizes" in cfg:
            cfg["split_sizes"] = None
    for cache in raw.get("features", {}).values():
        cache["source"] = "bundled"  # the packaged fallback base, without a network attempt
    for exp in raw["experiments"].values():
        exp["epochs"] = 1
        if exp.get("finetune"):  # the head alone for one epoch, then the base joins
            exp["epochs"], exp["finetune"]["unfreeze_epoch"] = 2, 1
        if "source" in exp.get("model_options", {}):
            exp["model_options"]["source"] = "bundled"
    raw["trainer"].update(enable_progress_bar=False)
    raw["loader"].update(num_workers=0)
    return raw


def test_dvc_repro_end_to_end(tmp_path):
    work = tmp_path / "repo"
    copy_repo(work)
    raw = shrink(yaml.safe_load((work / "params.yaml").read_text()))
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = cli_env()
    run_ok(["git", "init", "-q"], work, env)
    run_ok(["git", "add", "-A"], work, env)
    run_ok(["git", "commit", "-qm", "init"], work, env)

    out = run_ok(["dvc", "repro"], work, env)
    experiments = list(raw["experiments"])
    ran = stages_ran(out)
    assert {f"train@{e}" for e in experiments} <= ran
    # only the caches under features: get a features stage
    assert {s for s in ran if s.startswith("features@")} == {
        f"features@{c}" for c in raw["features"]
    }
    assert "nnlab comparison" in out  # compare prints its table at the end
    for name in experiments:
        metrics = read_json(work / f"reports/experiments/{name}/metrics.json")
        assert 0 <= metrics["test/acc"] <= 1
    table = (work / "reports/comparison.md").read_text()
    assert all(f"| {name} |" in table for name in experiments)
    client = tracking.client(root=work)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.info.run_name for r in runs) == sorted(experiments)
    for name in experiments:
        receipt = tracking.read_receipt(work / "models" / name)
        run = client.get_run(receipt["run_id"])
        assert "test/acc" in run.data.metrics and run.data.tags["data.source"] != "remote"

    # nothing changed: nothing reruns
    out = run_ok(["dvc", "repro"], work, env)
    assert stages_ran(out) == set() and "up to date" in out

    # every file a stage writes is a declared output: a fresh clone pulls them all from a
    # remote, DVC finds nothing changed, nothing reruns, and the models predict at once
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    run_ok(["dvc", "remote", "add", "-d", "store", str(remote)], work, env)
    run_ok(["git", "add", "-A"], work, env)
    run_ok(["git", "commit", "-qm", "lock"], work, env)
    run_ok(["dvc", "push"], work, env)
    run_ok(["git", "clone", "-q", str(work), str(clone)], tmp_path, env)
    run_ok(["dvc", "pull"], clone, env)
    assert "up to date" in run_ok(["dvc", "status"], clone, env)
    assert stages_ran(run_ok(["dvc", "repro"], clone, env)) == set()
    review = tmp_path / "review.txt"
    review.write_text("not good at all, a dull and boring film")
    out = run_ok([str(BIN / "nnlab"), "predict", "imdb_lstm", str(review)], clone, env)
    assert str(review) in out and "ERROR" not in out
    assert not (clone / "mlruns").exists()  # nothing ran: no store was even created

    # one experiment's param changed: only its train/evaluate and compare rerun
    out = run_ok(["dvc", "exp", "run", "-S", "experiments.catdog_cnn.lr=0.0005"], work, env)
    assert stages_ran(out) == {"train@catdog_cnn", "evaluate@catdog_cnn", "compare"}
    shown = run_ok(["dvc", "exp", "show", "--no-pager", "--csv"], work, env)
    assert "0.0005" in shown and "test/acc" in shown and "val/acc_best" in shown
    metrics = run_ok(["dvc", "metrics", "show"], work, env)
    assert "reports/experiments/mnist_cnn/metrics.json" in metrics
