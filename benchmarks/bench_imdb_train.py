"""LSTM/GRU training throughput (reviews/s: forward, backward, Adam step) on IMDB-shaped
batches, four variants of the registry's nets (``model_options.packed``):

* padded (the baseline, and what imdb_lstm/imdb_gru do: ``packed`` unset = packed only when
  bidirectional): the layer runs over the padded batch, trimmed to its longest review, and
  is read at each review's last real token;
* packed: ``pack_padded_sequence`` with the true lengths;
* each with random batches and with length bucketing (batches cut from length-sorted chunks
  of 50 batches, so a batch holds reviews of similar length and is trimmed to its longest).

Prints median reviews/s and each variant's ratio to padded, per cell. Lengths come from a
train_len.npy of a real split (``--lengths data/split/imdb/train_len.npy``), else from a
log-normal fit of IMDB review lengths (median 175 words, mean 234) cut at max_len; token ids
are random (throughput does not depend on them). The same batches are used for every
variant; variants alternate over --repeat rounds.

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_imdb_train.py
    (quick set: benchmarks/run_quick.sh)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import alternate, result
from nnlab.models.registry import build_model
from nnlab.spec import DataSpec


def imdb_like_lengths(n: int, max_len: int, rng: np.random.Generator) -> np.ndarray:
    # log-normal with median 175 and mean 234 (the IMDB training reviews, in words)
    sigma = np.sqrt(2 * np.log(234 / 175))
    return np.clip(rng.lognormal(np.log(175), sigma, n).astype(np.int64), 10, max_len)


def batches(lengths: np.ndarray, batch: int, bucket: bool, rng: np.random.Generator):
    order = rng.permutation(len(lengths))
    if bucket:
        chunk = batch * 50
        chunks = np.split(order, range(chunk, len(order), chunk))
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    cut = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)]
    return [cut[i] for i in rng.permutation(len(cut))]


def throughput(net, x, lengths, index_batches) -> float:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    y = torch.zeros(len(x))
    n = 0
    t0 = time.perf_counter()
    for idx in index_batches:
        idx = torch.from_numpy(idx)
        logits = net(x[idx], lengths[idx]).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(idx)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lengths", type=Path, default=None, help="a train_len.npy to draw from")
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20, help="batches per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    n = args.batch * 50 * 4
    if args.lengths is not None:
        pool = np.load(args.lengths)
        lengths = np.clip(rng.choice(pool, n), 1, args.max_len)
        where = str(args.lengths)
    else:
        lengths = imdb_like_lengths(n, args.max_len, rng)
        where = "log-normal IMDB fit"
    x = torch.from_numpy(rng.integers(2, 10000, (n, args.max_len)).astype(np.int32))
    for i, length in enumerate(lengths):
        x[i, length:] = 0
    lengths_t = torch.from_numpy(lengths)
    spec = DataSpec(
        kind="text",
        input_shape=(args.max_len,),
        classes=("neg", "pos"),
        vocab_size=10000,
        extra={"pad_index": 0},
    )
    print(
        f"lengths: {where}; mean {lengths.mean():.0f}, {np.mean(lengths == args.max_len):.0%} "
        f"at max_len {args.max_len}; batch {args.batch}; {args.batches} batches x "
        f"{args.repeat} rounds; {args.threads} threads; embed/hidden {args.hidden}"
    )
    plans = {b: batches(lengths, args.batch, b, rng)[: args.batches] for b in (False, True)}
    pad_frac = {
        b: 1 - sum(lengths[i].sum() for i in p) / sum(len(i) * lengths[i].max() for i in p)
        for b, p in plans.items()
    }
    print(
        f"padding inside the batches: random {pad_frac[False]:.0%}, bucketed {pad_frac[True]:.0%}"
    )
    variants = [
        ("padded", False, False),
        ("packed", True, False),
        ("padded + bucketing", False, True),
        ("packed + bucketing", True, True),
    ]
    for cell in ("lstm", "gru"):
        nets = {
            name: build_model(
                cell, spec, {"embed_dim": args.hidden, "hidden": args.hidden, "packed": packed}
            )
            for name, packed, _ in variants
        }
        for name, _, bucket in variants:  # warm-up
            throughput(nets[name], x, lengths_t, plans[bucket][:2])
        rates = alternate(
            {
                name: lambda net=nets[name], plan=plans[bucket]: throughput(net, x, lengths_t, plan)
                for name, _, bucket in variants
            },
            args.repeat,
        )
        base = rates["padded"]
        print(f"\n{cell.upper()} training throughput (median reviews/s, ratio to padded)")
        for name, _, _ in variants:
            print(f"   {name:<20} {rates[name]:8.0f}   x{rates[name] / base:.2f}")
        for name, _, _ in variants[1:]:
            result(f"{cell.upper()} training, {name} / padded (reviews/s)", rates[name] / base)


if __name__ == "__main__":
    main()
