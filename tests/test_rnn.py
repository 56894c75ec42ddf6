"""LSTM/GRU: padding invariance, checkpoints carrying the vocabulary, learning, length buckets."""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

from nnlab import paths
from nnlab.classifier import load_classifier
from nnlab.data.datamodule import ArrayDataModule, LengthBucketSampler
from nnlab.data.synthetic import synthetic_review
from nnlab.data.text import Vocabulary, tokenize
from nnlab.files import load_checkpoint, read_json
from nnlab.models.registry import build_model
from nnlab.spec import DataSpec
from nnlab.stages.download import run as run_download
from nnlab.stages.split import run as run_split
from nnlab.stages.train import build_classifier
from nnlab.summary import summary_text
from tests.test_text_folder import imdb_params

SPEC = DataSpec("text", (30,), ("negative", "positive"), 50, {"pad_index": 0, "max_len": 30})


def _padded(reviews: list[list[int]], width: int, fill: int = 0) -> tuple[torch.Tensor, ...]:
    x = torch.full((len(reviews), width), fill, dtype=torch.int32)
    for i, r in enumerate(reviews):
        x[i, : len(r)] = torch.tensor(r)
    return x, torch.tensor([len(r) for r in reviews])


@pytest.mark.parametrize("model", ["lstm", "gru"])
@pytest.mark.parametrize("options", [{}, {"bidirectional": True, "num_layers": 2, "dropout": 0.3}])
def test_padding_does_not_change_the_logit_and_bidirectional_nets_pack(model, options):
    """By default unidirectional nets run padded, bidirectional ones packed: the same function."""
    torch.manual_seed(0)
    options = {"embed_dim": 8, "hidden": 12, **options}
    net = build_model(model, SPEC, options).eval()
    packed = build_model(model, SPEC, {**options, "packed": True}).eval()
    packed.load_state_dict(net.state_dict())
    assert net.packed == ("bidirectional" in options)
    reviews = [[5, 9, 3, 7, 2, 8, 4], [6, 6], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]
    with torch.no_grad():
        short = net(*_padded(reviews, 11))
        long = net(*_padded(reviews, 30))
        garbage = net(*_padded(reviews, 30, fill=17))  # even non-pad tokens after the end
        alone = torch.cat([net(*_padded([r], 30)) for r in reviews])  # batch order, sorting
        from_packed = packed(*_padded(reviews, 30, fill=13))
        unpadded = net(_padded(reviews, 11, fill=13)[0])  # no lengths: every token counts
    assert short.shape == (3, 1)
    for same in (long, garbage, alone, from_packed):
        torch.testing.assert_close(short, same, rtol=0, atol=1e-5)
    assert not torch.allclose(short, unpadded, rtol=0.05, atol=1e-6)  # logits start small
    text = summary_text(net, SPEC, f"imdb_{model}")
    assert "(None, 30, 8)" in text  # embedding of a full-length review
    assert f"rnn ({model.upper()})" in text and "head (Linear)" in text and "(None, 1)" in text
    assert f"Total params: {sum(p.numel() for p in net.parameters()):,}" in text
    with pytest.raises(ValueError, match=r"model_options\.packed: .*bidirectional needs packed"):
        build_model(model, SPEC, {"bidirectional": True, "packed": False})
    with pytest.raises(ValueError, match="vocab"):
        build_model(model, DataSpec("image", (1, 28, 28), ("a", "b")))


def test_gru_learns_negation():
    """Word counts carry no signal here (test_synthetic_labels_depend_on_word_order)."""
    rng = np.random.default_rng(1)
    torch.manual_seed(1)

    def make(n):
        y = np.arange(n) % 2
        return [tokenize(synthetic_review(rng, int(label))) for label in y], y

    train_words, y_train = make(1000)
    test_words, y_test = make(300)
    vocab = Vocabulary.build(train_words, 500, max_len=64)
    x_train, len_train = vocab.encode(train_words)
    x_test, len_test = vocab.encode(test_words)

    net = build_model(
        "gru", replace(SPEC, vocab_size=len(vocab.tokens)), {"embed_dim": 16, "hidden": 32}
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xs, ls = torch.from_numpy(x_train), torch.from_numpy(len_train)
    ys = torch.from_numpy(y_train.astype(np.float32))
    for _ in range(6):
        for b in torch.randperm(len(xs)).split(32):
            loss = F.binary_cross_entropy_with_logits(net(xs[b], ls[b]).squeeze(-1), ys[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(x_test), torch.from_numpy(len_test)).squeeze(-1)
    gru_acc = float(((logits > 0).numpy() == y_test).mean())
    assert gru_acc > 0.85, gru_acc


def test_length_buckets_cover_every_sample_once_with_little_padding_under_ddp_too():
    lengths = np.random.default_rng(0).integers(5, 500, 640)

    def bucketed(shuffle=True):
        return LengthBucketSampler(lengths, batch_size=32, shuffle=shuffle, seed=3)

    first = list(bucketed())
    ranks = [list(DistributedSamplerWrapper(bucketed(), 2, r, False)) for r in (0, 1)]
    assert sorted(first) == sorted(ranks[0] + ranks[1]) == list(range(len(lengths)))
    for order, batch in [(first, 32), (ranks[0], 16), (ranks[1], 16)]:
        cut = [lengths[order[i : i + batch]] for i in range(0, len(order), batch)]
        assert sum(c.sum() for c in cut) / sum(len(c) * c.max() for c in cut) > 0.9  # real tokens
    maxima = [lengths[first[i : i + 32]].max() for i in range(0, 640, 32)]
    assert maxima != sorted(maxima)  # the batches shuffled, not a sweep from short to long
    resumed = bucketed()
    resumed.set_epoch(0)
    assert list(resumed) == first != list(resumed)  # seeded by the epoch, which advances itself
    assert np.all(np.diff(lengths[list(bucketed(shuffle=False))]) >= 0)  # evaluation


def test_bucketed_training_and_checkpoints_carry_the_vocabulary(tmp_path):
    params = imdb_params(**{"experiments.imdb_gru.bucket_by_length": True})
    run_download(params, "imdb", tmp_path)
    run_split(params, "imdb", tmp_path)
    dm = ArrayDataModule(
        "imdb", params.experiment("imdb_gru"), params.loader, params.seed, tmp_path
    )
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(build_classifier(params, "imdb_gru", dm.meta, "test"), datamodule=dm)
    sampler = trainer.train_dataloader.sampler
    assert isinstance(sampler, LengthBucketSampler) and sampler.epoch >= 1  # Lightning set it
    assert sum(len(b["y"]) for b in trainer.train_dataloader) == len(dm.datasets["train"])
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    vocab = read_json(tmp_path / "data/split/imdb" / paths.VOCAB)
    raw = load_checkpoint(tmp_path / "m.ckpt")
    assert raw["nnlab_assets"][paths.VOCAB] == vocab
    assert "<unk>" not in str(raw["hyper_parameters"])  # not in hparams (MLflow params)
    loaded = load_classifier(tmp_path / "m.ckpt")
    assert loaded.spec.extra["assets"][paths.VOCAB]["tokens"] == vocab["tokens"]
