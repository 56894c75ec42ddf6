"""Albumentations pipelines built from params, and per-worker/per-rank seeding.

albumentations 2.x draws from the pipeline's own generator, which a DataLoader worker
inherits as a copy: without reseeding every worker (and every DDP rank) would produce the
same augmentations. :func:`worker_init` reseeds from torch's per-worker seed, which differs
per worker and per epoch (fresh workers) and, under ``seed_everything(workers=True)``, per
rank; in the main process the pipeline is seeded from ``seed`` and the rank.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


class AugmentError(ValueError):
    pass


class Augment:
    """Callable HWC uint8 -> HWC uint8 wrapping an ``A.Compose`` built from params."""

    def __init__(self, steps: list[Any], seed: int):
        import albumentations as A

        transforms = []
        for i, step in enumerate(steps):
            name = step.name if hasattr(step, "name") else step["name"]
            args = dict(step.args if hasattr(step, "args") else step.get("args", {}))
            cls = getattr(A, name, None)
            if cls is None or not isinstance(cls, type):
                raise AugmentError(f"augment[{i}]: albumentations has no transform {name!r}")
            with warnings.catch_warnings():
                # albumentations ignores unknown/old keyword arguments with a warning only
                warnings.simplefilter("error")
                try:
                    transforms.append(cls(**args))
                except (TypeError, ValueError, UserWarning, DeprecationWarning) as err:
                    raise AugmentError(f"augment[{i}] {name}{args}: {err}") from None
        self.compose = A.Compose(transforms, seed=seed)
        self.seed = seed

    def reseed(self, seed: int) -> None:
        self.compose.set_random_seed(seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.compose(image=np.ascontiguousarray(image))["image"]


def build_augment(steps: list[Any], seed: int, rank: int | None = None) -> Augment:
    if rank is None:
        rank = int(torch.distributed.get_rank()) if torch.distributed.is_initialized() else 0
    return Augment(steps, seed=seed + 1_000_003 * rank)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Lightning's seeding, then a distinct augmentation seed."""
    from lightning.fabric.utilities.seed import pl_worker_init_function

    pl_worker_init_function(worker_id)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    transform = getattr(dataset, "transform", None)
    if isinstance(transform, Augment):
        transform.reseed(int(torch.initial_seed() % 2**32))
