"""What a net needs to know about its input, built from a split's meta.json (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    kind: str  # "image", "text" or "features" (a frozen base's outputs)
    input_shape: tuple[int, ...]  # (C, H, W) for images, (max_len,) for text, (D,) features
    classes: tuple[str, ...]
    vocab_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_outputs(self) -> int:
        return 1 if self.num_classes == 2 else self.num_classes


def spec_from_meta(meta: dict[str, Any]) -> DataSpec:
    return DataSpec(
        kind=meta["kind"],
        input_shape=tuple(meta["input_shape"]),
        classes=tuple(meta["classes"]),
        vocab_size=int(meta.get("vocab_size", 0)),
        extra={k: v for k, v in meta.items() if k in ("pad_index", "max_len")},
    )
