"""Keras-style model summary: layer, output shape, parameter count, then the totals."""

from __future__ import annotations

import torch
from torch import nn

from nnlab.spec import DataSpec


def example_inputs(spec: DataSpec, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """A dummy batch in the form the net receives it (images already scaled to floats)."""
    if spec.kind == "text":
        max_len = spec.input_shape[0]
        return (torch.ones(batch, max_len, dtype=torch.long), torch.full((batch,), max_len))
    return (torch.zeros(batch, *spec.input_shape),)


def _shape(out) -> tuple[int, ...] | None:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, tuple | list) and out:
        return _shape(out[0])
    if hasattr(out, "data") and isinstance(out.data, torch.Tensor):  # PackedSequence
        return tuple(out.data.shape)
    return None


def _keras_shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "?"
    dims = list(shape[1:])
    if len(dims) == 3:  # C, H, W -> H, W, C as Keras prints it
        dims = [dims[1], dims[2], dims[0]]
    return "(" + ", ".join(["None", *map(str, dims)]) + ")"


def summary_rows(net: nn.Module, spec: DataSpec) -> list[tuple[str, str, int]]:
    """(layer, output shape, own parameters) for each leaf module, in call order."""
    rows: list[tuple[str, str, int]] = []
    hooks = []
    leaves = [(n, m) for n, m in net.named_modules() if not list(m.children()) and n]
    seen: set[int] = set()

    def hook(name: str):
        def fn(module: nn.Module, args, out):
            if id(module) in seen:
                return
            seen.add(id(module))
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append((f"{name} ({type(module).__name__})", _keras_shape(_shape(out)), params))

        return fn

    for name, module in leaves:
        hooks.append(module.register_forward_hook(hook(name)))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(*example_inputs(spec))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return rows


def summary_text(net: nn.Module, spec: DataSpec, title: str = "") -> str:
    rows = summary_rows(net, spec)
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    w1 = max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2
    w2 = max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2
    width = w1 + w2 + 12
    lines = []
    if title:
        lines.append(f'Model: "{title}"')
    header = f"{'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>12}"
    lines += ["_" * width, header, "=" * width]
    for i, (name, shape, params) in enumerate(rows):
        lines.append(f"{name:<{w1}}{shape:<{w2}}{params:>12,}")
        lines.append("_" * width if i < len(rows) - 1 else "=" * width)
    lines += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        "_" * width,
    ]
    return "\n".join(lines)
