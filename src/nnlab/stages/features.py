"""features@<cache>: a frozen pretrained base run ONCE over every image of a split, written in the
split format (float16 vectors, meta.json, the base's weights): a dataset to train a head on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torchvision.transforms import v2

from nnlab import paths
from nnlab.checks import check_trainer
from nnlab.classifier import inference_trainer, scale_inputs
from nnlab.config import Params
from nnlab.data.datamodule import SPLITS, ArrayDataset, make_loader
from nnlab.data.prepare import load_arrays, load_meta, split_digest
from nnlab.files import atomic_dir, read_json, write_json
from nnlab.log import info

BASE_WEIGHTS = "base.pt"


class FrozenBase(L.LightningModule):  # predict_step: the base on images scaled as in training
    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base.eval().requires_grad_(False)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.base(*scale_inputs(batch)).float().cpu()


def run(params: Params, cache: str, root: Path = Path(".")) -> dict[str, Any]:
    """Write ``data/split/<cache>/``: the base's outputs for every split of its source."""
    from nnlab.models.backbones import build_base

    cfg, root = params.cache(cache), Path(root)
    meta = load_meta(cfg.from_, root)
    L.seed_everything(params.seed, verbose=False)  # weights: none is then the same base
    _, *size = meta["input_shape"]
    options = cfg.model_dump(include={"pool", "source", "weights", "timeout"})
    base, provenance = build_base(cfg.backbone, input_shape=(3, *size), **options)
    module = FrozenBase(nn.Sequential(v2.RGB(), base))  # grey images: the channel repeated
    check_trainer(params.trainer)
    trainer = inference_trainer(params)
    t0, counts, digests = time.perf_counter(), {}, {}
    with atomic_dir(paths.split_dir(cache, root)) as tmp:
        for split in SPLITS:
            arrays = load_arrays(cfg.from_, split, root)
            loader = make_loader(ArrayDataset({"x": arrays["x"]}), cfg.batch_size, params.loader)
            feats = torch.cat(trainer.predict(module, dataloaders=loader)).numpy()
            out = {"x": feats.astype(np.float16), "y": np.asarray(arrays["y"], dtype=np.int64)}
            for key, value in out.items():
                np.save(tmp / f"{split}_{key}.npy", value, allow_pickle=False)
            counts[split], digests[split] = len(feats), split_digest(out)
        torch.save(base.state_dict(), tmp / BASE_WEIGHTS)
        derived = {"from": cfg.from_, "backbone": provenance["backbone"], "pool": cfg.pool}
        derived.update(image_shape=meta["input_shape"], base_weights=BASE_WEIGHTS)
        features_meta = {"dataset": cache, "kind": "features", "input_shape": list(feats.shape[1:])}
        features_meta |= {"reader": meta["reader"], "classes": meta["classes"]}  # the images'
        features_meta |= {"source": meta.get("source", "unknown"), "pretrained": provenance}
        features_meta["derived"] = derived
        write_json(tmp / paths.META, features_meta)
        seconds = round(time.perf_counter() - t0, 2)
        manifest = {"dataset": cache, **derived, "pretrained": provenance, "counts": counts}
        manifest.update(digests=digests, dtype="float16", seconds=seconds)
        manifest["source_manifest"] = read_json(paths.split_dir(cfg.from_, root) / paths.MANIFEST)
        write_json(tmp / paths.MANIFEST, manifest)
    info(
        f"features@{cache}: {sum(counts.values())} images of {cfg.from_} through the frozen "
        f"{provenance['backbone']} base in {seconds:.1f}s -> features {list(feats.shape[1:])}"
    )
    return manifest
