"""Text folders (the lecture's IMDB reviews): download (archive, folder, HTTP, offline
fallback), tokenizer and vocabulary, the split stage, and predict on a text file from the
checkpoint alone."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nnlab import paths
from nnlab.config import TextFolderConfig
from nnlab.data import text_folder
from nnlab.data.sources import ChecksumError
from nnlab.data.synthetic import synthetic_review
from nnlab.data.text import PAD_INDEX, UNK_INDEX, Vocabulary, tokenize
from nnlab.files import read_json
from nnlab.log import DownloadError
from nnlab.stages.download import run as run_download
from nnlab.stages.split import run as run_split
from tests.conftest import SHARED, params_text, tiny_params
from tests.http_server import dead_url, serve

REVIEWS = {
    ("train", "pos"): ["A great film.<br /><br />Loved it!", "Wonderful acting, great plot."],
    ("train", "neg"): ["Awful. Just awful!!", "Boring plot; bad acting."],
    ("test", "pos"): ["Great great zyzzyva.", "Wonderful."],
    ("test", "neg"): ["Bad, boring zyzzyva.", "Awful film."],
}


def imdb_params(**overrides):
    """Tiny params with an imdb block (synthetic unless overridden) and both experiments."""
    model = {"embed_dim": 16, "hidden": 16}
    base = {
        "data.imdb": {
            "kind": "text_folder",
            "classes": {"neg": "negative", "pos": "positive"},
            "source": "synthetic",
            "synthetic_size": 240,
            "test_fraction": 0.25,
            "vocab_size": 200,
            "max_len": 40,
            "val_fraction": 0.2,
            "retries": 0,
            "timeout": 2,
        },
        "experiments.imdb_gru": {
            "dataset": "imdb",
            "model": "gru",
            "epochs": 1,
            "batch_size": 32,
            "model_options": model,
        },
        "experiments.imdb_lstm": {
            "dataset": "imdb",
            "model": "lstm",
            "epochs": 1,
            "batch_size": 32,
            "model_options": model,
        },
    }
    return tiny_params(**{**base, **overrides})


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def make_archive(path: Path) -> Path:
    """A tiny aclImdb-layout .tar.gz."""
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "aclImdb/README", b"readme")
        for (split, label), texts in REVIEWS.items():
            for i, text in enumerate(texts):
                _add(
                    tf,
                    f"aclImdb/{split}/{label}/{i}_{7 if label == 'pos' else 2}.txt",
                    text.encode(),
                )
        _add(tf, "aclImdb/train/unsup/0_0.txt", b"unlabelled, skipped")
    return path


def make_folder(root: Path) -> Path:
    for (split, label), texts in REVIEWS.items():
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_5.txt").write_text(text)
    return root


def read_raw(root: Path) -> list[dict]:
    with gzip.open(root / "data/raw/imdb" / paths.RAW_TEXTS, "rt") as fh:
        return [json.loads(line) for line in fh]


# ----------------------------------------------------------------------------- tokenizer


def test_tokenize_lowercases_strips_breaks_and_punctuation():
    text = "This movie was NOT good.<br /><br />It isn't bad, either...<BR>10/10!"
    assert tokenize(text) == [
        "this",
        "movie",
        "was",
        "not",
        "good",
        "it",
        "isn't",
        "bad",
        "either",
        "10",
        "10",
    ]
    assert tokenize("") == []
    assert "br" not in tokenize("a<br/>b<br />c")


def test_vocabulary_most_frequent_with_pad_and_unknown():
    texts = [["b", "a", "b", "c"], ["b", "a", "d"]]
    vocab = Vocabulary.build(texts, size=4, max_len=5)
    assert vocab.tokens == ("<pad>", "<unk>", "b", "a")  # c and d (once each) do not fit
    ids, lengths = vocab.encode([["a", "zzz", "b"], []])
    assert ids.dtype == np.int32 and ids.shape == (2, 5)
    assert ids[0].tolist() == [3, UNK_INDEX, 2, PAD_INDEX, PAD_INDEX]
    assert lengths.tolist() == [3, 0]
    assert Vocabulary.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


def test_encode_keeps_last_or_first_tokens():
    words = ["w1", "w2", "w3", "w4", "w5"]
    last = Vocabulary.build([words], 10, max_len=3, keep="last")
    ids, lengths = last.encode([words])
    assert last.decode(ids[0], lengths[0]) == "w3 w4 w5" and lengths[0] == 3
    first = Vocabulary.build([words], 10, max_len=3, keep="first")
    assert first.decode(first.encode([words])[0][0]) == "w1 w2 w3"


# ----------------------------------------------------------------------------- download


@pytest.mark.parametrize("kind", ["archive", "folder"])
def test_download_from_local_archive_or_folder(tmp_path, kind):
    src = (
        make_archive(tmp_path / "aclImdb.tar.gz")
        if kind == "archive"
        else make_folder(tmp_path / "src") / "aclImdb"
    )
    params = imdb_params(**{"data.imdb.source": "auto", "data.imdb.path": str(src)})
    manifest = run_download(params, "imdb", tmp_path)
    texts = sorted(r["text"] for r in read_raw(tmp_path))
    assert texts == sorted(t for ts in REVIEWS.values() for t in ts)  # unsup/ left out
    assert manifest["source"] == "remote"  # real data, from a local copy
    assert manifest["counts"]["train"] == {"neg": 2, "pos": 2}
    if kind == "archive":  # a local archive may be a repack: its checksum is recorded
        assert manifest["checksum"] == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    assert sorted(p.name for p in (tmp_path / "data/raw/imdb").iterdir()) == [
        paths.MANIFEST,
        paths.RAW_TEXTS,
    ]  # nothing extracted


def test_folder_without_reviews_names_what_is_missing(tmp_path):
    (tmp_path / "src" / "train" / "pos").mkdir(parents=True)
    params = imdb_params(**{"data.imdb.source": "auto", "data.imdb.path": str(tmp_path / "src")})
    with pytest.raises(ValueError, match=r"no labelled texts found \(expected <split>/<label>"):
        run_download(params, "imdb", tmp_path)
    assert not (tmp_path / "data/raw/imdb").exists()


def test_download_over_http_verified_and_archive_dropped(tmp_path):
    srv = tmp_path / "srv"
    srv.mkdir()
    archive = make_archive(srv / "aclImdb_v1.tar.gz")
    official = "#sha256=c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with serve(srv) as url:
        params = imdb_params(
            **{
                "data.imdb.source": "remote",
                "data.imdb.mirrors": [f"{url}/aclImdb_v1.tar.gz{official}"],
            }
        )
        with pytest.raises(ChecksumError, match=official[8:]):  # not the official file
            run_download(params, "imdb", tmp_path)
        assert not (tmp_path / "data/raw/imdb").exists()
        mirrors = [dead_url() + "/a.tar.gz", f"{url}/aclImdb_v1.tar.gz#sha256={digest}"]
        params = imdb_params(**{"data.imdb.source": "remote", "data.imdb.mirrors": mirrors})
        manifest = run_download(params, "imdb", tmp_path)
    assert manifest["files"][paths.RAW_ARCHIVE] == {
        "url": f"{url}/aclImdb_v1.tar.gz",
        "pinned": True,
        "checksum": f"sha256:{digest}",
    }
    assert len(read_raw(tmp_path)) == 8
    assert not (tmp_path / "data/raw/imdb" / paths.RAW_ARCHIVE).exists()


def test_offline_remote_fails_auto_falls_back_to_synthetic_loudly(tmp_path, capsys):
    with pytest.raises(DownloadError):
        run_download(
            imdb_params(**{"data.imdb.source": "remote", "data.imdb.mirrors": [dead_url()]}),
            "imdb",
            tmp_path,
        )
    with pytest.raises(ValueError, match=r"data\.imdb\.source"):
        imdb_params(**{"data.imdb.source": "bundled"})  # imdb has no bundled sample
    params = imdb_params(**{"data.imdb.source": "auto", "data.imdb.mirrors": [dead_url()]})
    manifest = run_download(params, "imdb", tmp_path)
    assert manifest["source"] == "synthetic reviews"
    assert "could not download" in manifest["fallback_reason"]
    assert "SYNTHETIC REVIEWS" in capsys.readouterr().err
    run_split(params, "imdb", tmp_path)
    assert read_json(tmp_path / "data/split/imdb" / paths.META)["source"] == "synthetic reviews"


def test_synthetic_labels_depend_on_word_order():
    rng = np.random.default_rng(0)
    texts = {
        label: [tokenize(synthetic_review(rng, label)) for _ in range(400)] for label in (0, 1)
    }
    # every adjective and "not" occur in both classes about equally often...
    for word in ("good", "bad", "not"):
        pos = sum(word in t for t in texts[1])
        neg = sum(word in t for t in texts[0])
        assert abs(pos - neg) < 0.25 * max(pos, neg), (word, pos, neg)
    # ...while "not" right before an adjective decides the label
    assert any(" not good" in " ".join(t) for t in texts[0])
    assert not any(" not good" in " ".join(t) for t in texts[1])
    assert any("not bad at all" in " ".join(t) for t in texts[1])
    # seeded: the same seed gives the same reviews
    again = np.random.default_rng(0)
    assert tokenize(synthetic_review(again, 0)) == texts[0][0]


# ----------------------------------------------------------------------------- split


def test_split_vocabulary_from_train_only(tmp_path):
    folder = make_folder(tmp_path / "src")
    params = imdb_params(
        **{
            "data.imdb.source": "auto",
            "data.imdb.path": str(folder),
            "data.imdb.val_fraction": 0.5,
            "data.imdb.max_len": 8,
        }
    )
    run_download(params, "imdb", tmp_path)
    manifest = run_split(params, "imdb", tmp_path)
    out = tmp_path / "data/split/imdb"
    vocab = Vocabulary.from_json(read_json(out / paths.VOCAB))
    assert "zyzzyva" not in vocab.tokens  # test-only word
    assert "br" not in vocab.tokens
    meta = read_json(out / paths.META)
    assert meta["kind"] == "text" and meta["input_shape"] == [8]
    assert meta["vocab_size"] == len(vocab) and meta["assets"] == [paths.VOCAB]
    assert manifest["counts"] == {"train": 2, "val": 2, "test": 4}
    # words only in the validation reviews are unknown too
    x_train, len_train = np.load(out / "train_x.npy"), np.load(out / "train_len.npy")
    train_words = {w for i in range(2) for w in vocab.decode(x_train[i], len_train[i]).split()}
    assert set(vocab.tokens[2:]) == train_words
    x, lengths = np.load(out / "test_x.npy"), np.load(out / "test_len.npy")
    assert x.dtype == np.int32 and lengths.max() <= 8
    great = vocab.index.get("great", UNK_INDEX)
    row = next(i for i in range(4) if x[i, 0] == great)  # "great great zyzzyva" (a positive)
    assert x[row, :3].tolist() == [great, great, UNK_INDEX] and lengths[row] == 3


@pytest.mark.parametrize(
    "truncate, kept", [("last", "great film loved it"), ("first", "a great film loved")]
)
def test_split_truncates_long_reviews_on_the_side_params_name(tmp_path, truncate, kept):
    folder = make_folder(tmp_path / "src")
    params = imdb_params(
        **{
            "data.imdb.source": "auto",
            "data.imdb.path": str(folder),
            "data.imdb.max_len": 4,
            "data.imdb.truncate": truncate,
            "data.imdb.val_fraction": 0.5,
        }
    )
    run_download(params, "imdb", tmp_path)
    run_split(params, "imdb", tmp_path)
    out = tmp_path / "data/split/imdb"
    vocab = Vocabulary.from_json(read_json(out / paths.VOCAB))
    texts = {
        vocab.decode(x, n)
        for split in ("train", "val")
        for x, n in zip(
            np.load(out / f"{split}_x.npy"), np.load(out / f"{split}_len.npy"), strict=True
        )
    }
    assert kept in texts  # "A great film. Loved it!" cut to 4 words
    meta = read_json(out / paths.META)
    assert meta["truncate"].startswith(f"keep the {truncate}")
    assert vocab.keep == truncate  # predict cuts a new review the same way


def test_split_is_seeded_and_balanced(tmp_path):
    params = imdb_params()
    run_download(params, "imdb", tmp_path / "a")
    run_download(params, "imdb", tmp_path / "b")
    ma = run_split(params, "imdb", tmp_path / "a")
    run_split(params, "imdb", tmp_path / "b")
    for f in ("train_x.npy", "val_len.npy", "test_y.npy"):
        a = np.load(tmp_path / "a/data/split/imdb" / f)
        assert np.array_equal(a, np.load(tmp_path / "b/data/split/imdb" / f))
    assert ma["class_counts"]["train"]["positive"] == ma["class_counts"]["train"]["negative"]


# ----------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def trained_gru(tmp_path_factory):
    """imdb_gru trained 1 epoch on tiny synthetic data, then evaluated."""
    from nnlab.stages.evaluate import run as evaluate
    from nnlab.stages.train import run as train

    root = tmp_path_factory.mktemp("imdb_project")
    params = imdb_params()
    run_download(params, "imdb", root)
    run_split(params, "imdb", root)
    train(params, "imdb_gru", root)
    evaluate(params, "imdb_gru", root)
    return root, params


def test_evaluate_writes_text_examples(trained_gru):
    root, _ = trained_gru
    figures = root / "reports/experiments/imdb_gru" / paths.FIGURES
    examples = (figures / paths.EXAMPLES).read_text()
    assert "P(positive) =" in examples and "most confidently wrong" in examples


def test_predict_text_file_without_data_dir(trained_gru, tmp_path, monkeypatch, capsys):
    from nnlab.cli import main

    src, params = trained_gru
    root = tmp_path / "copy"
    shutil.copytree(src / "models", root / "models")  # no data/: the checkpoint has the vocab
    review = root / "review.txt"
    review.write_text("The acting was not good at all.<br />I did not like it.")
    empty = root / "empty.txt"
    empty.write_text("... !!!")
    (root / "params.yaml").write_text(params_text(params))
    monkeypatch.chdir(root)
    rc = main(["predict", "imdb_gru", "review.txt", "empty.txt"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1  # one file failed
    file, label, prob = out[0].split("\t")
    assert file == "review.txt" and label in ("positive", "negative")
    assert 0.5 <= float(prob) <= 1.0
    assert out[1].startswith("empty.txt\tERROR") and "no words" in out[1]


@pytest.mark.shared
def test_shared_archive_layout_if_present():
    archive = SHARED / "datasets" / "aclImdb.tar.gz"
    if not archive.is_file():
        pytest.skip("../shared/datasets/aclImdb.tar.gz not present")
    cfg = TextFolderConfig(kind="text_folder", path=str(archive), classes=["neg", "pos"])
    records, report = text_folder.read_texts(cfg, archive, str(archive))
    assert len(records) == 50000 and report["skipped_count"] == 0
    assert {(r["split"], r["label"]) for r in records} == {
        (s, lab) for s in ("train", "test") for lab in ("neg", "pos")
    }
