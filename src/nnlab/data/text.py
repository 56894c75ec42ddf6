"""Text to integer arrays: a regex tokenizer and a frequency vocabulary.

Tokens are lower-cased runs of letters and digits with inner apostrophes (``don't`` stays one
word); ``<br />`` and punctuation go. A :class:`Vocabulary` maps the ``size - 2`` most frequent
training words to ``2..size-1`` (0 pads, 1 is every unknown word); its JSON form is written
beside the arrays and carried by the checkpoint, so ``predict`` tokenizes as training did.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnlab.paths import VOCAB as VOCAB_ASSET  # noqa: F401  (the name other layers import)

PAD, UNK = "<pad>", "<unk>"
PAD_INDEX, UNK_INDEX = 0, 1
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case words of ``text``: ``<br />`` and punctuation removed."""
    return _WORD.findall(_BREAK.sub(" ", text.lower()))


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]  # index -> word; tokens[0] = PAD, tokens[1] = UNK
    max_len: int
    keep: str = "last"  # which max_len tokens of a longer text are kept: "first" or "last"

    def __post_init__(self) -> None:
        if self.tokens[:2] != (PAD, UNK):
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}")
        if self.keep not in ("first", "last"):
            raise ValueError(f"keep must be 'first' or 'last', got {self.keep!r}")

    @classmethod
    def build(cls, texts: Iterable[Sequence[str]], size: int, max_len: int, keep: str = "last"
              ) -> Vocabulary:
        """The ``size - 2`` most frequent words of ``texts`` (ties: alphabetical)."""
        counts: Counter[str] = Counter()
        for words in texts:
            counts.update(words)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(size - 2, 0)]
        return cls((PAD, UNK, *(w for w, _ in ranked)), max_len, keep)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.tokens)}

    def encode(self, texts: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token lists -> ``(ids, lengths)``: int32 (N, max_len) padded at the end with 0,
        and the true lengths (after truncation to ``max_len``)."""
        index = self.index
        ids = np.zeros((len(texts), self.max_len), dtype=np.int32)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for row, words in enumerate(texts):
            words = words[-self.max_len :] if self.keep == "last" else words[: self.max_len]
            ids[row, : len(words)] = [index.get(w, UNK_INDEX) for w in words]
            lengths[row] = len(words)
        return ids, lengths

    def decode(self, ids: Sequence[int], length: int | None = None) -> str:
        n = len(ids) if length is None else int(length)
        return " ".join(self.tokens[int(i)] for i in ids[:n])

    def to_json(self) -> dict[str, Any]:
        return {"tokenizer": "lower-case; <br /> and punctuation removed; [^\\W_]+('[^\\W_]+)*",
                "pad_index": PAD_INDEX, "unk_index": UNK_INDEX, "max_len": self.max_len,
                "keep": self.keep, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Vocabulary:
        try:
            return cls(tuple(obj["tokens"]), int(obj["max_len"]), obj.get("keep", "last"))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a vocabulary: missing or bad key {err}") from None
