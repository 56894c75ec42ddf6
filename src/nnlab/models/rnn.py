"""Embedding -> LSTM or GRU -> the state at the last real token (padding changes no logit) ->
Dense; ``packed``: real tokens only (a backward direction needs it), else faster on CPU."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class RecurrentClassifier(nn.Module):
    """Options as the registry's lstm/gru builders check them (packed None: if bidirectional)."""

    def __init__(self, cell, spec, embed_dim, hidden, num_layers, bidirectional, dropout, packed):
        super().__init__()
        if spec.vocab_size < 2:
            raise ValueError(f"{cell} needs a vocabulary (vocab_size {spec.vocab_size}): text only")
        self.packed = bidirectional if packed is None else packed
        if bidirectional and not self.packed:
            raise ValueError(
                f"model_options.packed: {cell} with bidirectional needs packed: true "
                f"(the backward direction would otherwise start in the padding)"
            )
        self.directions = 2 if bidirectional else 1
        pad = int(spec.extra.get("pad_index", 0))
        self.embedding = nn.Embedding(spec.vocab_size, embed_dim, padding_idx=pad)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](
            embed_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # between stacked layers only
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * self.directions, spec.num_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = torch.full((len(x),), x.shape[1]) if lengths is None else lengths
        lengths = lengths.to("cpu", torch.long).clamp(1, x.shape[1])  # packing wants CPU
        x = x[:, : int(lengths.max())]  # stored padded to max_len; drop all-padding columns
        emb = self.embedding(x)
        if self.packed:
            seq = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
            _, state = self.rnn(seq)
            h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            last = torch.cat(list(h[-self.directions :]), dim=-1)
        else:  # unidirectional: the output at the last real token (padding comes after it)
            out, _ = self.rnn(emb)
            last = out[torch.arange(len(out), device=out.device), (lengths - 1).to(out.device)]
        return self.head(self.dropout(last))
