"""One LightningDataModule over split arrays; whole batches fetched, images uint8 to the device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nnlab.config import ExperimentConfig, LoaderConfig
from nnlab.data.augment import build_augment, worker_init
from nnlab.data.prepare import load_arrays, load_meta
from nnlab.files import read_json
from nnlab.paths import SPLITS, split_dir


@dataclass(eq=False)
class ArrayDataset(Dataset):
    """Samples of one split; ``transform`` (training images only) maps HWC uint8 to HWC uint8."""

    arrays: dict[str, np.ndarray]
    transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.arrays["x"])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows, back = np.unique(indices, return_inverse=True)  # sorted reads: kinder to a memmap
        batch = {key: arr[rows][back] for key, arr in self.arrays.items()}
        x = batch.pop("x")
        if self.transform is not None:
            x = np.stack([self.transform(image) for image in x])
        if x.ndim == 4:  # images: NHWC -> NCHW, still uint8
            x = x.transpose(0, 3, 1, 2)
        labels = {key: torch.from_numpy(v.astype(np.int64)) for key, v in batch.items()}
        return {"x": torch.from_numpy(np.ascontiguousarray(x)), **labels}


@dataclass(eq=False)
class LengthBucketSampler(Sampler[int]):
    """Texts of like length batched (chunks sorted, batches shuffled); evaluation: length order."""

    lengths: np.ndarray
    batch_size: int
    shuffle: bool
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        if not self.shuffle:
            return iter(np.argsort(self.lengths, kind="stable").tolist())
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1  # the next epoch differs even where nobody calls set_epoch
        order = rng.permutation(len(self.lengths))
        chunk = np.arange(len(order)) // (self.batch_size * 50)  # samples sorted together
        order = order[np.lexsort((self.lengths[order], chunk))]
        n_full = len(order) // self.batch_size
        full = order[: n_full * self.batch_size].reshape(n_full, self.batch_size)
        shuffled = full[rng.permutation(n_full)].ravel()
        return iter(np.concatenate([shuffled, order[n_full * self.batch_size :]]).tolist())


def make_loader(
    data: Dataset,
    batch_size: int,
    loader: LoaderConfig,
    shuffle: bool = False,
    workers: int | None = None,
    sampler: Sampler | None = None,
) -> DataLoader:
    """The one way a DataLoader is built; a ``sampler`` (which then shuffles) sets the order."""
    workers = loader.num_workers if workers is None else workers
    pin = torch.cuda.is_available() if loader.pin_memory == "auto" else loader.pin_memory
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=bool(pin),
        persistent_workers=workers > 0 and loader.persistent_workers,
        collate_fn=dict,  # __getitems__ returns the whole batch: a dict of tensors
        worker_init_fn=worker_init if workers else None,
    )


class ArrayDataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: str,
        experiment: ExperimentConfig,
        loader: LoaderConfig,
        seed: int,
        root: Path = Path("."),
    ):
        super().__init__()
        self.dataset_name = dataset
        self.exp = experiment
        self.loader = loader
        self.seed = seed
        self.root = Path(root)
        self.meta = load_meta(dataset, self.root)  # fails early, naming the missing stage
        self.datasets: dict[str, ArrayDataset] = {}
        self.sizer: Any = None  # train's ThreadSizer: the loaders take the workers it planned

    def assets(self, names: list[str]) -> dict[str, Any]:
        """Files listed in meta["assets"] (a vocabulary): they travel in the checkpoint."""
        return {n: read_json(split_dir(self.dataset_name, self.root) / n) for n in names}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        transform = build_augment(self.exp.augment, self.seed) if self.exp.augment else None
        for split in SPLITS:
            arrays = load_arrays(self.dataset_name, split, self.root)
            self.datasets[split] = ArrayDataset(arrays, transform if split == "train" else None)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        workers = self.sizer.plan["num_workers"] if self.sizer is not None else None
        data, size, sampler = self.datasets[split], self.exp.batch_size, None
        if self.exp.bucket_by_length:
            sampler = LengthBucketSampler(data.arrays["len"], size, shuffle, self.seed)
        return make_loader(data, size, self.loader, shuffle, workers, sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
