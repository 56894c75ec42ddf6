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
from nnlab.config import ConfigError
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

SPEC = DataSpec(
    kind="text",
    input_shape=(30,),
    classes=("negative", "positive"),
    vocab_size=50,
    extra={"pad_index": 0, "max_len": 30},
)


def _padded(reviews: list[list[int]], width: int, fill: int = 0) -> tuple[torch.Tensor, ...]:
    x = torch.full((len(reviews), width), fill, dtype=torch.int32)
    for i, r in enumerate(reviews):
        x[i, : len(r)] = torch.tensor(r)
    return x, torch.tensor([len(r) for r in reviews])


@pytest.mark.parametrize("model", ["lstm", "gru"])
@pytest.mark.parametrize("options", [{}, {"bidirectional": True, "num_layers": 2, "dropout": 0.3}])
def test_padding_does_not_change_the_logit(model, options):
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
    assert not torch.allclose(short, unpadded, atol=1e-3)


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_bidirectional_packs_by_default_refuses_padding_and_text_only(model):
    net = build_model(model, SPEC, {"embed_dim": 8, "hidden": 12, "bidirectional": True})
    assert net.packed
    text = summary_text(net, SPEC, f"imdb_{model}")
    assert "(None, 30, 8)" in text  # embedding of a full-length review
    assert f"rnn ({model.upper()})" in text and "head (Linear)" in text and "(None, 1)" in text
    assert f"Total params: {sum(p.numel() for p in net.parameters()):,}" in text
    with pytest.raises(ValueError, match=r"model_options\.packed: .*bidirectional needs packed"):
        build_model(model, SPEC, {"bidirectional": True, "packed": False})
    with pytest.raises(ValueError, match="vocab"):
        build_model(model, DataSpec(kind="image", input_shape=(1, 28, 28), classes=("a", "b")))


@pytest.fixture(scope="module")
def imdb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imdb_rnn")
    params = imdb_params()
    run_download(params, "imdb", root)
    run_split(params, "imdb", root)
    return root


def fit(params, name: str, root, **trainer_options) -> tuple[L.Trainer, ArrayDataModule]:
    dm = ArrayDataModule("imdb", params.experiment(name), params.loader, params.seed, root)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, **trainer_options
    )
    trainer.fit(build_classifier(params, name, dm.meta, "test"), datamodule=dm)
    assert trainer.state.finished
    return trainer, dm


@pytest.mark.parametrize("name", ["imdb_lstm", "imdb_gru"])
def test_fast_dev_run_and_checkpoint_carries_vocabulary(imdb_root, tmp_path, name):
    trainer, _ = fit(imdb_params(), name, imdb_root, fast_dev_run=2)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    vocab = read_json(imdb_root / "data/split/imdb" / paths.VOCAB)
    raw = load_checkpoint(ckpt)
    assert raw["nnlab_assets"][paths.VOCAB] == vocab
    assert "<unk>" not in str(raw["hyper_parameters"])  # not in hparams (MLflow params)
    assert load_classifier(ckpt).spec.extra["assets"][paths.VOCAB]["tokens"] == vocab["tokens"]


@pytest.fixture
def one_thread():
    """Small recurrent steps run fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gru_learns_negation_where_bag_of_words_cannot(one_thread):
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

    def counts(x):
        m = np.stack([np.bincount(row, minlength=len(vocab)) for row in x]).astype(float)
        m[:, 0] = 1  # a bias instead of the padding's count
        return m

    a = counts(x_train)
    w = np.linalg.solve(a.T @ a + np.eye(len(vocab)), a.T @ (2.0 * y_train - 1))
    bow_acc = float(((counts(x_test) @ w > 0) == y_test).mean())

    net = build_model("gru", replace(SPEC, vocab_size=len(vocab)), {"embed_dim": 16, "hidden": 32})
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
    assert bow_acc < 0.65, bow_acc  # unigram counts carry (almost) no signal
    assert gru_acc > 0.85, gru_acc


def _padding(order: list[int], lengths: np.ndarray, batch: int) -> float:
    """Fraction of a batch's trimmed tensor that is padding, over all batches of ``order``."""
    cut = [lengths[order[i : i + batch]] for i in range(0, len(order), batch)]
    return 1 - sum(c.sum() for c in cut) / sum(len(c) * c.max() for c in cut)


def test_length_buckets_cover_every_sample_once_and_cut_the_padding_under_ddp_too():
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(175), 0.75, 3210).astype(int), 5, 500)
    sampler = LengthBucketSampler(lengths, batch_size=32, shuffle=True, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(first) == list(range(len(lengths))) and len(sampler) == len(lengths)
    random = rng.permutation(len(lengths)).tolist()
    assert _padding(first, lengths, 32) < 0.1 < 0.4 < _padding(random, lengths, 32)
    # the batch order is shuffled: long and short batches alternate, not a sorted sweep
    maxima = [lengths[first[i : i + 32]].max() for i in range(0, 3200, 32)]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    # seeded by epoch: the same epoch repeats, the next differs, a resumed run agrees
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(sampler) != first  # the epoch advanced by itself
    again = LengthBucketSampler(lengths, 32, True, seed=3)
    again.set_epoch(1)
    sampler.set_epoch(1)
    assert list(again) == list(sampler)
    # evaluation: length order, every sample once
    ordered = list(LengthBucketSampler(lengths, 32, shuffle=False, seed=3))
    assert sorted(ordered) == list(range(len(lengths)))
    assert np.all(np.diff(lengths[ordered]) >= 0)
    # DDP ranks split the epoch, each rank's batches of 16 from one 32-sample bucket
    ranks = [
        list(DistributedSamplerWrapper(LengthBucketSampler(lengths, 32, True, 5), 2, r, False))
        for r in (0, 1)
    ]
    assert sorted(ranks[0] + ranks[1]) == list(range(len(lengths)))
    assert all(_padding(order, lengths, 16) < 0.1 for order in ranks)


def test_bucketed_training_runs_and_only_text_may_bucket(imdb_root):
    params = imdb_params(**{"experiments.imdb_gru.bucket_by_length": True})
    trainer, dm = fit(params, "imdb_gru", imdb_root, max_epochs=2, enable_checkpointing=False)
    sampler = trainer.train_dataloader.sampler
    assert isinstance(sampler, LengthBucketSampler) and sampler.epoch >= 1  # Lightning set it
    assert sum(len(b["y"]) for b in trainer.train_dataloader) == len(dm.datasets["train"])
    with pytest.raises(ConfigError, match=r"experiments\.mnist_cnn\.bucket_by_length: .*mnist"):
        imdb_params(**{"experiments.mnist_cnn.bucket_by_length": True})
