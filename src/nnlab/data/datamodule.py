"""One LightningDataModule over the prepared split arrays, for every dataset.

The dataset fetches whole batches (``__getitems__``): one fancy-index into the memory-mapped
arrays per batch instead of one Python call per sample, which keeps the loader as fast as a
bare loop over tensors. Images stay uint8 until they reach the device (the Classifier scales
them), so workers and host-to-device copies move a quarter of the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nnlab.config import ExperimentConfig, TrainerConfig
from nnlab.data.prepare import load_arrays, load_meta
from nnlab.spec import spec_from_meta


class ArrayDataset(Dataset):
    """Samples of one split. ``transform`` (training images only) maps an HWC uint8 image
    to an HWC uint8 image; it is applied per sample."""

    def __init__(self, arrays: dict[str, np.ndarray], transform: Callable | None = None):
        self.arrays = arrays
        self.transform = transform

    def __len__(self) -> int:
        return len(self.arrays["y"])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices)
        order = np.argsort(idx, kind="stable")  # sorted reads are kinder to a memmap
        batch = {}
        for key, arr in self.arrays.items():
            values = np.empty((len(idx), *arr.shape[1:]), dtype=arr.dtype)
            values[order] = arr[idx[order]]
            batch[key] = values
        if "features" in batch:  # a frozen base's cached outputs (nnlab.features), not images
            return {"features": torch.from_numpy(batch["features"]),
                    "y": torch.from_numpy(batch["y"].astype(np.int64))}
        x = batch["x"]
        if self.transform is not None:
            x = np.stack([self.transform(image) for image in x])
        if x.ndim == 4:  # images: NHWC -> NCHW, still uint8
            x = x.transpose(0, 3, 1, 2)
        out = {"x": torch.from_numpy(np.ascontiguousarray(x))}
        out["y"] = torch.from_numpy(batch["y"].astype(np.int64))
        if "len" in batch:
            out["len"] = torch.from_numpy(batch["len"].astype(np.int64))
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def _whole_batch(batch: Any) -> Any:
    """collate_fn: ``__getitems__`` already returns a collated batch."""
    return batch


class ArrayDataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: str,
        experiment: ExperimentConfig,
        trainer: TrainerConfig,
        seed: int = 0,
        root: Path = Path("."),
    ):
        super().__init__()
        self.dataset_name = dataset
        self.exp = experiment
        self.tcfg = trainer
        self.seed = seed
        self.root = Path(root)
        self.meta = load_meta(dataset, self.root)  # fails early, naming the missing stage
        self.spec = spec_from_meta(self.meta)
        self.datasets: dict[str, ArrayDataset] = {}
        # set by train when the net's frozen base was run once by features@<experiment>:
        # batches then carry its cached outputs ("features") instead of images
        self.features_dir: Path | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from nnlab.data.augment import build_augment

        transform = build_augment(self.exp.augment, self.seed) if self.exp.augment else None
        for split in ("train", "val", "test"):
            if self.features_dir is not None:
                from nnlab.features import load_features

                self.datasets[split] = ArrayDataset(load_features(self.features_dir, split))
                continue
            arrays = load_arrays(self.dataset_name, split, self.root)
            self.datasets[split] = ArrayDataset(arrays, transform if split == "train" else None)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        from nnlab.data.augment import worker_init

        workers = self.tcfg.num_workers
        pin = self.tcfg.pin_memory
        if pin == "auto":
            pin = torch.cuda.is_available()
        return DataLoader(
            self.datasets[split],
            batch_size=self.exp.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0 and self.tcfg.persistent_workers,
            pin_memory=bool(pin),
            collate_fn=_whole_batch,
            worker_init_fn=worker_init if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
