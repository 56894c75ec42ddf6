"""A tiny real nnlab project for the UI screenshots (tools/ui_screenshots.sh), offline.

    python tools/demo_project.py <folder>

writes <folder>/params.yaml (the bundled MNIST sample capped at 400 digits, synthetic IMDB
reviews, 3 epochs), then download, split, train and evaluate of mnist_mlp, mnist_cnn and
imdb_gru: three runs in two MLflow experiments, with their dataset inputs and registered
models. A minute or two on two CPU cores. Then prints the store's experiments and runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

PARAMS = {
    "seed": 7,
    "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                "log_every_n_steps": 1},
    "data": {
        "mnist": {"source": "bundled", "max_samples": 400, "test_fraction": 0.25},
        "imdb": {"source": "synthetic", "synthetic_size": 600, "test_fraction": 0.25,
                 "vocab_size": 300, "max_len": 40, "val_fraction": 0.2},
    },
    "experiments": {
        "mnist_mlp": {"dataset": "mnist", "model": "mlp", "epochs": 3, "batch_size": 32,
                      "model_options": {"hidden": 64}},
        "mnist_cnn": {"dataset": "mnist", "model": "cnn_small", "epochs": 3, "batch_size": 32},
        "imdb_gru": {"dataset": "imdb", "model": "gru", "epochs": 3, "batch_size": 32,
                     "optimizer": "adam", "lr": 0.005,
                     "model_options": {"embed_dim": 16, "hidden": 16}},
    },
}


def run(params, name: str, root: Path) -> None:
    """train and evaluate one experiment; its dataset inputs and model are logged here until
    train and evaluate log them themselves."""
    from nnlab import serving, tracking
    from nnlab.stages.evaluate import run as evaluate
    from nnlab.stages.train import run as train

    client = tracking.client(root)
    run_id = train(params, name, root)["run_id"]
    if not client.get_run(run_id).inputs.dataset_inputs:
        tracking.log_datasets(run_id, params.experiment(name).dataset, root)
    evaluate(params, name, root)
    if not client.get_run(run_id).outputs.model_outputs:
        serving.log_best_model(params, name, root)


def main(root: Path) -> None:
    from nnlab import tracking
    from nnlab.config import load_params
    from nnlab.stages.download import run as run_download
    from nnlab.stages.split import run as run_split

    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    params = load_params(root / "params.yaml")
    for dataset in ("mnist", "imdb"):
        run_download(params, dataset, root)
        run_split(params, dataset, root)
    for name in params.experiments:
        run(params, name, root)
    # a worse retraining: registered as version 2, the alias @best stays on version 1
    cnn = params.experiments["mnist_cnn"].model_copy(update={"epochs": 1})
    run(params.model_copy(update={"experiments": {"mnist_cnn": cnn}}), "mnist_cnn", root)
    client = tracking.client(root)
    for e in client.search_experiments():
        for r in client.search_runs([e.experiment_id]):
            print(e.name, e.experiment_id, r.info.run_name, r.info.run_id)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/demo_project.py <folder>")
    main(Path(sys.argv[1]))
