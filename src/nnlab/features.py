"""The ``features@<experiment>`` stage: a frozen base's outputs, computed once.

A net may split into ``base`` and ``head`` with ``net(x) == net.head(net.base(x))`` (the
transfer nets do). When none of the base's parameters train and the experiment uses no
augmentation, ``base(x)`` is the same every epoch: this stage computes it once for every split
(float16) into ``data/features/<experiment>/`` and training feeds the head from there (the
batches carry ``features`` instead of ``x``). Nothing else changes: the checkpoint holds base
and head, so evaluate and predict run on images.

Every experiment has this stage, so that ``dvc.yaml`` can give every ``train@<experiment>`` the
same dependency (DVC's foreach cannot add one to some items only); for the others it writes
only a manifest saying why nothing is cached. The manifest records the base's weights (and a
fallback backbone, loudly) and a signature of the base and the split: training checks it
against the net it builds, and an unchanged signature is reused instead of recomputed (the
stage output is persistent), so editing, say, the epochs costs no second pass over the images.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnlab.config import ExperimentConfig, Params
from nnlab.data.datamodule import ArrayDataset
from nnlab.data.prepare import SPLITS, load_arrays, load_meta, split_dir
from nnlab.data.sources import info
from nnlab.files import atomic_dir, file_digest, read_json, write_json

FEATURE_ROOT = Path("data/features")
MANIFEST = "manifest.json"
AUGMENTED = "training uses augmentation: the base sees new images every epoch"


class StaleFeaturesError(RuntimeError):
    """Cached features that were not computed by the net being trained."""


def feature_dir(name: str, root: Path = Path(".")) -> Path:
    return Path(root) / FEATURE_ROOT / name


def why_not_cached(net: nn.Module, exp: ExperimentConfig) -> str | None:
    """None when the base's outputs can be cached for this experiment, else the reason."""
    if not (isinstance(getattr(net, "base", None), nn.Module)
            and isinstance(getattr(net, "head", None), nn.Module)):
        return f"model {exp.model!r} has no frozen pretrained base (no base/head split)"
    trainable = sum(p.numel() for p in net.base.parameters() if p.requires_grad)
    if trainable:
        return f"{trainable:,} parameters of the base train (model_options.trainable_blocks)"
    if exp.augment:
        return AUGMENTED
    return None


def base_digest(net: nn.Module) -> str:
    """Identity of the base: its structure and every weight and buffer."""
    h = hashlib.sha256(repr(net.base).encode())
    # buffers include the non-persistent ones (the input normalisation)
    for key, value in [*net.base.named_parameters(), *net.base.named_buffers()]:
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def split_digest(dataset: str, root: Path) -> str:
    folder = split_dir(dataset, root)
    h = hashlib.sha256()
    for f in [*sorted(folder.glob("*.npy")), folder / "meta.json"]:
        h.update(f.name.encode())
        h.update(file_digest(f).encode())
    return h.hexdigest()[:16]


def code_digest() -> str:
    """This module and the Classifier's input scaling decide what is cached, beside the base."""
    import nnlab.classifier

    h = hashlib.sha256()
    for source in (Path(nnlab.classifier.__file__), Path(__file__)):
        h.update(source.read_bytes())
    return h.hexdigest()[:16]


def _signature(exp: ExperimentConfig, net: nn.Module, root: Path) -> dict[str, Any]:
    return {"base": base_digest(net), "split": split_digest(exp.dataset, root),
            "code": code_digest(), "dtype": "float16"}


def _classifier(exp: ExperimentConfig, meta: dict[str, Any]):
    from nnlab.classifier import Classifier

    return Classifier(model=exp.model, meta=meta, model_options=exp.model_options).eval()


@torch.inference_mode()
def compute(model, arrays: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    """``base(x)`` for every sample, float16, in the model's own preprocessing."""
    data = ArrayDataset({"x": arrays["x"], "y": arrays["y"]})
    out = []
    for start in range(0, len(data), batch_size):
        batch = data.__getitems__(list(range(start, min(start + batch_size, len(data)))))
        out.append(model.net.base(*model.inputs(batch)).float().numpy().astype(np.float16))
    return np.concatenate(out)


def run_features(params: Params, name: str, root: Path = Path(".")) -> dict[str, Any]:
    """Write ``data/features/<name>/`` (or keep it when its signature still holds)."""
    from nnlab.models.registry import build_model, loading_checkpoint
    from nnlab.spec import spec_from_meta

    exp = params.experiment(name)
    root = Path(root)
    out = feature_dir(name, root)
    meta = load_meta(exp.dataset, root)
    reason = AUGMENTED if exp.augment else None
    if reason is None:
        try:
            with loading_checkpoint():  # the structure alone decides; no weights fetched yet
                probe = build_model(exp.model, spec_from_meta(meta), exp.model_options)
        except Exception as err:  # train@ will report it; this stage just has nothing to do
            reason = f"model {exp.model!r} could not be built to inspect it ({err})"
        else:
            reason = why_not_cached(probe, exp)
    if reason is not None:
        manifest = {"experiment": name, "cached": False, "reason": reason}
        with atomic_dir(out) as tmp:
            write_json(tmp / MANIFEST, manifest)
        info(f"features@{name}: nothing to cache ({reason})")
        return manifest

    import lightning as L

    L.seed_everything(params.seed, workers=True, verbose=False)  # as train does: a randomly
    model = _classifier(exp, meta)  # initialised base (weights: none) is then the same one
    signature = _signature(exp, model.net, root)
    old = _manifest(out)
    if old.get("cached") and old.get("signature") == signature and all(
        (out / f"{s}_features.npy").is_file() for s in SPLITS
    ):
        info(f"features@{name}: {out} is up to date (signature {signature})")
        return old
    t0 = time.perf_counter()
    shapes, counts = {}, {}
    with atomic_dir(out) as tmp:
        for split in SPLITS:
            arrays = load_arrays(exp.dataset, split, root)
            feats = compute(model, arrays, batch_size=max(exp.batch_size, 64))
            np.save(tmp / f"{split}_features.npy", feats, allow_pickle=False)
            np.save(tmp / f"{split}_y.npy", np.asarray(arrays["y"], dtype=np.int64))
            shapes[split], counts[split] = list(feats.shape[1:]), len(feats)
        manifest = {
            "experiment": name,
            "cached": True,
            "model": exp.model,
            "model_options": exp.model_options,
            "pretrained": getattr(model.net, "provenance", {}),
            "data_source": meta.get("source", "unknown"),
            "signature": signature,
            "shape": shapes["train"],
            "counts": counts,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        write_json(tmp / MANIFEST, manifest)
    info(f"features@{name}: {sum(counts.values())} images through the frozen base "
         f"({manifest['pretrained'].get('backbone', '?')}) in {manifest['seconds']:.1f}s -> "
         f"{out}, features {shapes['train']}")
    return manifest


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        return read_json(folder / MANIFEST)
    except (FileNotFoundError, ValueError):
        return {}


def training_features(
    name: str, exp: ExperimentConfig, net: nn.Module, root: Path = Path(".")
) -> Path | None:
    """The folder of cached features this net can train its head on, or None (train on
    images). Raises :class:`StaleFeaturesError` when a cache exists for another base/split."""
    folder = feature_dir(name, root)
    manifest = _manifest(folder)
    if not manifest.get("cached") or why_not_cached(net, exp) is not None:
        return None
    signature = _signature(exp, net, Path(root))
    if manifest.get("signature") != signature:
        raise StaleFeaturesError(
            f"{folder}: features were computed for another base or split "
            f"({manifest.get('signature')} vs {signature}, e.g. VGG16 weights that became "
            f"reachable); rerun `nnlab features {name}` (`dvc repro -f features@{name}`)"
        )
    return folder


def load_features(folder: Path, split: str) -> dict[str, np.ndarray]:
    return {
        "features": np.load(folder / f"{split}_features.npy", mmap_mode="r"),
        "y": np.load(folder / f"{split}_y.npy", mmap_mode="r"),
    }
