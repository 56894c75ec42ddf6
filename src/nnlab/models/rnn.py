"""Recurrent text classifiers: Embedding -> LSTM or GRU -> last hidden state(s) -> Dense.

The recurrent layer runs over *packed* sequences (``pack_padded_sequence`` with the true
lengths), so it stops at each review's last real token: the padding never reaches the hidden
state, and a review gives the same logit however far it is padded. With ``bidirectional``
the last layer's final forward and backward states are concatenated.

``packed: false`` runs the layer over the whole padded batch instead and reads its output at
each review's last real token: for a unidirectional net that is the same function (the
padding comes after that token), and on CPU it trains several times faster: PyTorch's CPU
kernels (oneDNN for the LSTM) do far better on a padded batch than on a packed one, whose
time steps shrink as reviews end (``benchmarks/bench_imdb_train.py``).
A backward direction would start in the padding, so it is refused with ``bidirectional``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from nnlab.models.registry import register
from nnlab.spec import DataSpec


class RecurrentClassifier(nn.Module):
    def __init__(
        self,
        cell: str,
        vocab_size: int,
        num_outputs: int,
        pad_index: int = 0,
        embed_dim: int = 64,
        hidden: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        packed: bool = True,
    ):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"{cell}: needs a vocabulary (vocab_size {vocab_size}): text only")
        if not 0 <= dropout < 1:
            raise ValueError(f"{cell}: dropout must be in [0, 1), got {dropout}")
        if bidirectional and not packed:
            raise ValueError(f"{cell}: bidirectional needs packed: true (the backward direction "
                             f"would otherwise start in the padding)")
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.packed = packed
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_index)
        self.rnn = rnn_cls(
            embed_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # between stacked layers only
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * self.directions, num_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        lengths = lengths.to("cpu", torch.long).clamp(1, x.shape[1])  # packing wants CPU
        x = x[:, : int(lengths.max())]  # stored padded to max_len; drop all-padding columns
        emb = self.embedding(x)
        if self.packed:
            seq = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
            _, state = self.rnn(seq)
            h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            # h: (layers * directions, batch, hidden), in the batch's original order
            last = torch.cat(list(h[-self.directions :]), dim=-1)
        else:  # unidirectional: the output at the last real token (padding comes after it)
            out, _ = self.rnn(emb)
            idx = (lengths - 1).to(out.device)
            last = out[torch.arange(len(out), device=out.device), idx]
        return self.head(self.dropout(last))


def _build(cell: str, spec: DataSpec, **options) -> nn.Module:
    return RecurrentClassifier(
        cell,
        spec.vocab_size,
        spec.num_outputs,
        pad_index=int(spec.extra.get("pad_index", 0)),
        **options,
    )


@register("lstm")
def lstm(
    spec: DataSpec,
    embed_dim: int = 64,
    hidden: int = 64,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    packed: bool = True,
) -> nn.Module:
    """Embedding -> LSTM over packed sequences -> last hidden state(s) -> Dense 1 logit."""
    return _build("lstm", spec, embed_dim=embed_dim, hidden=hidden, num_layers=num_layers,
                  bidirectional=bidirectional, dropout=dropout, packed=packed)


@register("gru")
def gru(
    spec: DataSpec,
    embed_dim: int = 64,
    hidden: int = 64,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    packed: bool = True,
) -> nn.Module:
    """Embedding -> GRU over packed sequences -> last hidden state(s) -> Dense 1 logit."""
    return _build("gru", spec, embed_dim=embed_dim, hidden=hidden, num_layers=num_layers,
                  bidirectional=bidirectional, dropout=dropout, packed=packed)
