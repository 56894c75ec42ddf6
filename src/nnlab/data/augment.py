"""Albumentations from ``augment:``; each transform's stream apart, per worker, epoch and rank."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.fabric.utilities.seed import pl_worker_init_function

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI call on import in each worker

_STREAM_TAG = 0x6E6E6C61  # keeps augmentation streams apart from Lightning's own worker seeds


class AugmentError(ValueError):
    """An ``augment:`` step that albumentations cannot build as written."""


def _build(step: Any, where: str):
    import albumentations as A

    step = step.model_dump() if hasattr(step, "model_dump") else step  # an AugmentStep of params
    if not (isinstance(step, dict) and "name" in step):
        raise AugmentError(f"{where} expects {{name: ..., args: {{...}}}}, got {step!r}")
    name, args = step["name"], dict(step.get("args") or {})
    cls = getattr(A, name, None)
    if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform | A.BaseCompose)):
        raise AugmentError(f"{where} {name}: no such albumentations transform")
    if issubclass(cls, A.BaseCompose):
        children = args.pop("transforms", None)
        if not isinstance(children, list) or not children:
            raise AugmentError(f"{where} {name}: needs a non-empty 'transforms' list of steps")
        args["transforms"] = [_build(c, f"{where}.transforms[{i}]") for i, c in enumerate(children)]
    with warnings.catch_warnings():  # unknown or old arguments: albumentations only warns
        warnings.simplefilter("error")
        try:
            return cls(**args)
        except (TypeError, ValueError, UserWarning, DeprecationWarning) as err:
            shown = {k: v for k, v in args.items() if k != "transforms"}
            raise AugmentError(f"{where} {name}{shown}: {err}") from None


def _seed_all(transform: Any, seed_seq: np.random.SeedSequence) -> None:
    """A distinct child seed for the pipeline and for every (nested) transform."""
    children = list(getattr(transform, "transforms", []) or [])
    own, *kids = seed_seq.spawn(1 + len(children))
    transform.set_random_seed(int(own.generate_state(1)[0]))
    for child, ss in zip(children, kids, strict=True):  # after the compose's own reseeding
        _seed_all(child, ss)


class Augment:
    """HWC uint8 -> HWC uint8 by ``A.Compose(steps)``, its stream from the seed and the rank."""

    def __init__(self, steps: list[Any], seed: int, rank: int | None = None):
        import albumentations as A

        self.compose = A.Compose([_build(step, f"augment[{i}]") for i, step in enumerate(steps)])
        self.reseed(seed, rank_zero_only.rank if rank is None else rank)  # Lightning's global rank

    def reseed(self, *entropy: int) -> None:
        """Restart the stream from ``entropy`` (any ints: seed, worker id, rank...)."""
        _seed_all(self.compose, np.random.SeedSequence([*map(int, entropy), _STREAM_TAG]))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.compose(image=np.ascontiguousarray(image))["image"]


build_augment = Augment  # the name the stages use


def worker_init(worker_id: int) -> None:
    """A DataLoader worker: Lightning's seeding, then a stream per (seed, worker, rank)."""
    base_seed = torch.initial_seed() - worker_id
    pl_worker_init_function(worker_id)
    transform = getattr(torch.utils.data.get_worker_info().dataset, "transform", None)
    if isinstance(transform, Augment):
        transform.reseed(base_seed, worker_id, rank_zero_only.rank)
