"""Shared by the benchmark scripts: where the shared datasets are, a throwaway project built
from a params dict, the pipeline's classifier and training (a hand loop or Lightning), runs
that alternate between variants, and the ``result:`` lines that ``results.py`` collects
into RESULTS.md.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
# ../shared/datasets next to the checkout (the lead's layout), or NNLAB_SHARED_DATASETS
SHARED = Path(os.environ.get("NNLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}


def cli_env(*unset: str) -> dict[str, str]:
    """The environment of a ``python -m nnlab.cli`` subprocess: this checkout's src first, no
    MLFLOW_TRACKING_URI (the temporary project's own store), nor the variables in ``unset``."""
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    for var in ("MLFLOW_TRACKING_URI", *unset):
        env.pop(var, None)
    return env


def quiet() -> None:
    """No Lightning banners or warnings between the figures."""
    import lightning  # noqa: F401  (it sets its loggers' levels when imported)

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def result(label: str, value: float, unit: str = "x") -> None:
    """One headline figure of a benchmark (``unit`` "x": a ratio to the baseline measured in
    the same run). results.py puts every such line into the RESULTS.md table."""
    print(f"result: {label} = {value:.3g} {unit}", flush=True)


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """The median of each run over ``repeats`` rounds, the runs taking turns within a round
    (so background load hits every variant alike)."""
    got: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            got[name].append(run())
    return {name: median(values) for name, values in got.items()}


def make_params(
    experiments: dict[str, dict[str, Any]],
    data: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    **loader: Any,
):
    """Params for a throwaway project: CPU, one device, no progress bar, and torch's current
    thread count (so a stage's thread sizing never changes it between variants)."""
    from nnlab.config import parse_params

    return parse_params(
        {
            "seed": 0,
            "trainer": TRAINER,
            "loader": {"threads": torch.get_num_threads(), **loader},
            "data": data or {"cats_vs_dogs": {"kind": "image_folder", "source": "synthetic"}},
            "features": features or {},
            "experiments": experiments,
        }
    )


def prepare(params, root: Path) -> None:
    """download@ and split@ of every dataset under ``data:``, into ``root``."""
    from nnlab.stages.download import run as run_download
    from nnlab.stages.split import run as run_split

    for dataset in params.data:
        run_download(params, dataset, root)
        run_split(params, dataset, root)


def image_meta(shape: tuple[int, int, int], classes: int = 2) -> dict[str, Any]:
    """A split's meta.json for images of ``shape`` (C, H, W): what a classifier is built from."""
    names = ["cats", "dogs"] if classes == 2 else [str(i) for i in range(classes)]
    return {"kind": "image", "input_shape": list(shape), "classes": names}


def classifier(params, name: str, meta: dict[str, Any]):
    """The experiment's Classifier, as train builds it (seeded: every variant starts alike)."""
    from nnlab.stages.train import build_classifier

    torch.manual_seed(0)
    return build_classifier(params, name, meta, "bench")


def loading_samples_per_s(make: Callable[[], Iterable[dict]], epochs: int = 1) -> float:
    """Samples/s of reading ``epochs`` passes over ``make()``'s batches, nothing else."""
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in make():
            n += len(batch["y"])
    return n / (time.perf_counter() - t0)


def endless(make: Callable[[], Iterable[dict]]) -> Iterator[dict]:
    """The batches of ``make()``, epoch after epoch (the consumer stops)."""
    while True:
        yield from make()


def train_samples_per_s(model, batches: Iterable[dict], max_batches: int, warmup: int = 2) -> float:
    """Samples/s of the Classifier's training step (forward incl. input scaling and memory
    format, loss, backward, optimizer step) over ``max_batches`` batches after ``warmup``."""
    opt = model.configure_optimizers()
    model.train()
    n, t0 = 0, time.perf_counter()
    for i, batch in enumerate(batches):
        if i == warmup:
            n, t0 = 0, time.perf_counter()
        loss = model.training_step(batch, i)  # the real step: forward, loss, metrics
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(batch["y"])
        if i + 1 >= max_batches + warmup:
            break
    return n / (time.perf_counter() - t0)


def fit(
    params,
    name: str,
    root: Path,
    epochs: int | None = None,
    validate: bool = True,
    stage: bool = False,
) -> tuple[float, int]:
    """(seconds of the training loop, training samples seen) of ``trainer.fit`` as train runs
    it (ArrayDataModule, build_classifier, lightning.Trainer), without MLflow. ``stage``: with
    the train stage's callbacks (thread sizing, checkpoints, History, Timer) and Trainer
    arguments (``params.trainer``); otherwise a bare CPU Trainer."""
    import lightning as L
    from lightning.pytorch.callbacks import Timer

    from nnlab.data.datamodule import ArrayDataModule
    from nnlab.stages.train import History, best_checkpoint
    from nnlab.threads import ThreadSizer

    exp = params.experiment(name)
    epochs = epochs or exp.epochs
    L.seed_everything(params.seed, verbose=False)
    dm = ArrayDataModule(exp.dataset, exp, params.loader, params.seed, root)
    model = classifier(params, name, dm.meta)
    callbacks = []
    if stage:  # what the train stage adds to a bare Trainer
        dm.sizer = ThreadSizer(params.loader.threads, params.loader.num_workers)
        out = root / "models" / name
        callbacks = [
            dm.sizer,
            History(out / "history.csv"),
            Timer(),
            best_checkpoint(out),
        ]
    trainer = L.Trainer(
        **(params.trainer.kwargs() if stage else TRAINER),  # the stage's: precision, determinism
        max_epochs=epochs,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=stage,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
        **({} if validate else {"limit_val_batches": 0}),
    )

    class LoopClock(L.Callback):
        """From the first epoch's start to the loop's end: Trainer setup and teardown are
        left out, as a bare loop has none."""

        def on_train_start(self, trainer, module) -> None:
            self.t0 = time.perf_counter()

        def on_train_end(self, trainer, module) -> None:
            self.seconds = time.perf_counter() - self.t0

    clock = LoopClock()
    trainer.callbacks.append(clock)
    trainer.fit(model, datamodule=dm)
    return clock.seconds, len(dm.datasets["train"]) * epochs
