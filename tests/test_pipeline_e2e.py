"""End to end: the real dvc.yaml in a temporary git repo, shrunk through params only."""

import pytest
import yaml

from nnlab import tracking
from nnlab.files import read_json
from tests.conftest import BIN, cli_env, copy_repo, run_ok, stages_ran
from tests.http_server import dead_url

pytestmark = pytest.mark.slow


def commit(work, env, message: str) -> None:
    """Everything in ``work`` committed (the repo made if new)."""
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", message]):
        run_ok(cmd, work, env)


def dvc_project(work, edit) -> dict:
    """This repository in a fresh git repo at ``work``, params.yaml ``edit``ed: the params."""
    copy_repo(work)
    raw = yaml.safe_load((work / "params.yaml").read_text())
    edit(raw)
    raw["trainer"].update(enable_progress_bar=False)
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    commit(work, cli_env(), "init")
    return raw


def shrink(raw: dict) -> None:
    """Tiny, offline, fast: every dataset falls back loudly, every experiment runs 1 epoch."""
    for cfg in raw["data"].values():
        cfg.update(source="auto", mirrors=[dead_url()], path=None, retries=0, timeout=2)
        cfg["max_samples"] = 200
        for key, value in {"synthetic_size": 120, "image_size": 32, "split_sizes": None}.items():
            if key in cfg:
                cfg[key] = value
        if "image_size" in cfg:
            cfg["synthetic_image_size"] = 32
    for cache in raw.get("features", {}).values():
        cache["source"] = "bundled"  # the packaged fallback base, without a network attempt
    for exp in raw["experiments"].values():
        exp["epochs"] = 1
        if exp.get("finetune"):  # the head alone for one epoch, then the base joins
            exp["epochs"], exp["finetune"]["unfreeze_epoch"] = 2, 1
        if "source" in exp.get("model_options", {}):
            exp["model_options"]["source"] = "bundled"
    raw["loader"].update(num_workers=0)


def test_dvc_repro_end_to_end(tmp_path):
    work, env = tmp_path / "repo", cli_env()
    raw = dvc_project(work, shrink)
    out = run_ok(["dvc", "repro"], work, env)
    experiments = list(raw["experiments"])
    ran = stages_ran(out)
    assert {f"train@{e}" for e in experiments} <= ran
    # only the caches under features: get a features stage
    features = {f"features@{c}" for c in raw["features"]}
    assert {s for s in ran if s.startswith("features@")} == features
    assert "nnlab comparison" in out  # compare prints its table at the end
    table = (work / "reports/comparison.md").read_text()
    client = tracking.client(root=work)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.info.run_name for r in runs) == sorted(experiments)
    for name in experiments:
        assert 0 <= read_json(work / f"reports/experiments/{name}/metrics.json")["test/acc"] <= 1
        assert f"| {name} |" in table
        run = client.get_run(tracking.read_receipt(work / "models" / name)["run_id"])
        assert "test/acc" in run.data.metrics and run.data.tags["data.source"] != "remote"

    # nothing changed: nothing reruns
    out = run_ok(["dvc", "repro"], work, env)
    assert stages_ran(out) == set() and "up to date" in out

    # every file a stage writes is a declared output: a fresh clone pulls them all from a
    # remote, DVC finds nothing changed, nothing reruns, and the models predict at once
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    run_ok(["dvc", "remote", "add", "-d", "store", str(remote)], work, env)
    commit(work, env, "lock")
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
