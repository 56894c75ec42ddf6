"""Keras-style model summary from params alone (a head on features behind its frozen base)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from torchvision.transforms import v2

from nnlab import paths
from nnlab.checks import check_model
from nnlab.data import reader
from nnlab.files import read_json
from nnlab.models.backbones import base_output_shape, build_base
from nnlab.models.registry import build_model, loading_checkpoint
from nnlab.spec import DataSpec, spec_from_meta


def _keras_shape(out) -> str:
    """The output's shape as Keras prints it: (None, H, W, C) for images."""
    while isinstance(out, tuple | list):  # an RNN's (output, state)
        out = out[0]
    out = getattr(out, "data", out)  # a PackedSequence's data
    dims = [*out.shape[2:], out.shape[1]] if out.ndim == 4 else out.shape[1:]  # channels last
    return "(" + ", ".join(["None", *map(str, dims)]) + ")"


def summary_rows(net: nn.Module, spec: DataSpec) -> list[tuple[str, str, int]]:
    """(layer, output shape, own parameters) for each leaf module, in call order."""
    rows: list[tuple[str, str, int]] = []
    leaves = {m: n for n, m in net.named_modules() if n and not list(m.children())}

    def record(module: nn.Module, args, out) -> None:
        name = leaves.pop(module, None)
        if name is not None:  # a module called twice is listed once
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append((f"{name} ({type(module).__name__})", _keras_shape(out), params))

    x = torch.ones(1, *spec.input_shape, dtype=torch.long if spec.kind == "text" else None)
    was_training = net.training
    with torch.no_grad(), register_module_forward_hook(record):
        net.eval()(x)  # token ids (all real), or images scaled to floats
    net.train(was_training)
    return rows


def summary_text(net: nn.Module, spec: DataSpec, title: str = "") -> str:
    table = [("Layer (type)", "Output Shape", "Param #")]
    table += [(name, shape, f"{params:,}") for name, shape, params in summary_rows(net, spec)]
    w1, w2 = (max(len(row[i]) for row in table) + 2 for i in (0, 1))
    width = w1 + w2 + 12
    body = [f"{name:<{w1}}{shape:<{w2}}{params:>12}" for name, shape, params in table]
    lines = [f'Model: "{title}"', "_" * width] if title else ["_" * width]
    for i, row in enumerate(body):  # "=" under the header and the last layer
        lines += [row, "=" * width if i in (0, len(body) - 1) else "_" * width]
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    lines += [f"Total params: {total:,}", f"Trainable params: {trainable:,}"]
    lines += [f"Non-trainable params: {total - trainable:,}", "_" * width]
    return "\n".join(lines)


def dataset_spec(params, dataset: str, root: Path = Path(".")) -> DataSpec:
    """A split's meta.json spec, else its params'; a cache's extra: its random base, image spec."""
    file = paths.split_dir(dataset, root) / paths.META
    meta = read_json(file) if file.is_file() else None
    if dataset in params.features:
        cfg = params.features[dataset]
        image = dataset_spec(params, cfg.from_, root)
        backbone = (meta or {}).get("derived", {}).get("backbone", cfg.backbone)  # as used
        channels, *size = image.input_shape
        base, _ = build_base(backbone, pool=cfg.pool, weights="none", input_shape=(3, *size))
        if channels == 1:  # grey images: the channel repeated for the ImageNet base
            base = nn.Sequential(v2.RGB(), base)
        shape = tuple(base_output_shape(base, image.input_shape))
        return DataSpec("features", shape, image.classes, extra={"base": base, "image": image})
    if meta is not None:
        return spec_from_meta(meta)
    cfg = params.dataset(dataset)
    return reader(cfg.kind).spec(cfg, dataset, Path(root))


def summarize(params, name: str, root: Path = Path(".")) -> str:
    """The summary of an experiment's net, from params alone (nothing downloaded)."""
    exp = params.experiment(name)
    check_model(params, name)
    with loading_checkpoint():  # shapes and counts only: no weight download
        spec = dataset_spec(params, exp.dataset, root)
        net = build_model(exp.model, spec, dict(exp.model_options))
    if spec.kind == "features":  # as it runs on a photo: the frozen base, then the head
        return summary_text(nn.Sequential(spec.extra["base"], net), spec.extra["image"], name)
    return summary_text(net, spec, name)
