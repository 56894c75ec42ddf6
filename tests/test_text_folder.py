"""Text folders (the lecture's IMDB reviews): download, tokenizer and vocabulary, split, and
predict on a text file from the checkpoint alone."""

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nnlab import paths
from nnlab.config import TextFolderConfig
from nnlab.data.prepare import load_arrays
from nnlab.data.synthetic import synthetic_review
from nnlab.data.text import PAD_INDEX, UNK_INDEX, Vocabulary, read_texts, stored_texts, tokenize
from nnlab.files import file_digest, read_json
from nnlab.log import DownloadError
from nnlab.stages.download import run as run_download
from tests.conftest import SHARED, params_text, tiny_params
from tests.folders import prepare
from tests.http_server import dead_url, serve

REVIEWS = {
    ("train", "pos"): ["A great film.<br /><br />Loved it!", "Wonderful acting, great plot."],
    ("train", "neg"): ["Awful. Just awful!!", "Boring plot; bad acting."],
    ("test", "pos"): ["Great great zyzzyva.", "Wonderful."],
    ("test", "neg"): ["Bad, boring zyzzyva.", "Awful film."],
}


def imdb_params(**overrides):
    """Tiny params: a synthetic imdb, imdb_gru and imdb_lstm; a key without a dot is imdb's."""
    imdb = {"kind": "text_folder", "classes": {"neg": "negative", "pos": "positive"}}
    imdb |= {"source": "synthetic", "synthetic_size": 240, "test_fraction": 0.25}
    imdb |= {"vocab_size": 200, "max_len": 40, "val_fraction": 0.2, "retries": 0, "timeout": 2}
    exp = {"dataset": "imdb", "epochs": 1, "batch_size": 32}
    exp["model_options"] = {"embed_dim": 16, "hidden": 16}
    experiments = {f"experiments.imdb_{m}": {**exp, "model": m} for m in ("gru", "lstm")}
    overrides = {k if "." in k else f"data.imdb.{k}": v for k, v in overrides.items()}
    return tiny_params(**{"data.imdb": imdb, **experiments, **overrides})


def make_folder(root: Path) -> Path:
    for (split, label), texts in REVIEWS.items():
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_5.txt").write_text(text)
    return root


def make_archive(path: Path) -> Path:
    """A tiny aclImdb-layout .tar.gz, with a README and unlabelled ``train/unsup/`` reviews."""
    folder = make_folder(path.parent / "reviews") / "aclImdb"
    (folder / "README").write_text("readme")
    (folder / "train/unsup").mkdir()
    (folder / "train/unsup/0_0.txt").write_text("unlabelled, skipped")
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname="aclImdb")
    return path


def test_tokenizer_and_vocabulary_most_frequent_with_pad_and_unknown_keeps_last_or_first():
    text = "This movie was NOT good.<br /><br />It isn't bad, either...<BR>10/10!"
    assert " ".join(tokenize(text)) == "this movie was not good it isn't bad either 10 10"
    assert tokenize("a<br/>b<br />c") == ["a", "b", "c"] and tokenize("") == []
    vocab = Vocabulary.build([["b", "a", "b", "c"], ["b", "a", "d"]], size=4, max_len=5)
    assert vocab.tokens == ("<pad>", "<unk>", "b", "a")  # c and d (once each) do not fit
    ids, lengths = vocab.encode([["a", "zzz", "b"], []])
    assert ids.dtype == np.int32 and ids.shape == (2, 5)
    assert ids[0].tolist() == [3, UNK_INDEX, 2, PAD_INDEX, PAD_INDEX] and lengths.tolist() == [3, 0]
    assert Vocabulary.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab
    words = ["w1", "w2", "w3", "w4", "w5"]
    last = Vocabulary.build([words], 10, max_len=3, keep="last")
    ids, lengths = last.encode([words])
    assert last.decode(ids[0], lengths[0]) == "w3 w4 w5" and lengths[0] == 3
    first = Vocabulary.build([words], 10, max_len=3, keep="first")
    assert first.decode(first.encode([words])[0][0]) == "w1 w2 w3"


@pytest.mark.parametrize("kind", ["archive", "folder", "http"])
def test_download_from_an_archive_a_folder_or_http_nothing_extracted(tmp_path, kind):
    (tmp_path / "srv").mkdir()
    archive = make_archive(tmp_path / "srv/aclImdb.tar.gz")
    digest = file_digest(archive)
    with serve(tmp_path / "srv") as url:
        mirrors = [dead_url() + "/a.tar.gz", f"{url}/aclImdb.tar.gz#sha256={digest}"]
        where = {"archive": {"path": str(archive)}, "http": {"mirrors": mirrors}}
        where["folder"] = {"path": str(tmp_path / "srv/reviews/aclImdb")}
        manifest = run_download(imdb_params(source="auto", **where[kind]), "imdb", tmp_path)
    texts = sorted(r["text"] for r in stored_texts(tmp_path / "data/raw/imdb" / paths.RAW_TEXTS))
    assert texts == sorted(t for ts in REVIEWS.values() for t in ts)  # unsup/ left out
    assert manifest["source"] == "remote"  # real data, from a local copy or a mirror
    assert manifest["counts"]["train"] == {"neg": 2, "pos": 2}
    if kind == "archive":  # a local archive may be a repack: its checksum is recorded
        assert manifest["checksum"] == f"sha256:{digest}"
    if kind == "http":  # the mirror that worked
        assert manifest["files"][paths.RAW_ARCHIVE]["url"] == f"{url}/aclImdb.tar.gz"
    raw = sorted(p.name for p in (tmp_path / "data/raw/imdb").iterdir())
    assert raw == [paths.MANIFEST, paths.RAW_TEXTS]  # nothing extracted, the archive dropped


def test_offline_remote_fails_auto_falls_back_to_synthetic_loudly(tmp_path, capsys):
    with pytest.raises(DownloadError):
        run_download(imdb_params(source="remote", mirrors=[dead_url()]), "imdb", tmp_path)
    with pytest.raises(ValueError, match=r"data\.imdb\.source"):
        imdb_params(source="bundled")  # imdb has no bundled sample
    params = imdb_params(source="auto", mirrors=[dead_url()])
    manifest = run_download(params, "imdb", tmp_path)
    assert manifest["source"] == "synthetic reviews"
    assert "could not download" in manifest["fallback_reason"]
    assert "SYNTHETIC REVIEWS" in capsys.readouterr().err


def test_synthetic_labels_depend_on_word_order():
    rng = np.random.default_rng(0)
    texts = {y: [" ".join(tokenize(synthetic_review(rng, y))) for _ in range(400)] for y in (0, 1)}
    for word in ("good", "bad", "not"):  # every adjective and "not" in both classes alike...
        pos, neg = (sum(word in t.split() for t in texts[y]) for y in (1, 0))
        assert abs(pos - neg) < 0.25 * max(pos, neg), (word, pos, neg)
    # ...while "not" right before an adjective decides the label
    assert any(" not good" in t for t in texts[0]) and not any(" not good" in t for t in texts[1])
    assert any("not bad at all" in t for t in texts[1])
    assert " ".join(tokenize(synthetic_review(np.random.default_rng(0), 0))) == texts[0][0]


@pytest.mark.parametrize(
    "truncate, kept", [("last", "great film loved it"), ("first", "a great film loved")]
)
def test_split_vocabulary_from_train_only_and_truncation(tmp_path, truncate, kept):
    folder = str(make_folder(tmp_path / "src"))
    params = imdb_params(source="auto", path=folder, val_fraction=0.5, max_len=4, truncate=truncate)
    manifest = prepare(params, "imdb", tmp_path)
    out = tmp_path / "data/split/imdb"
    vocab = Vocabulary.from_json(read_json(out / paths.VOCAB))
    assert "zyzzyva" not in vocab.tokens and "br" not in vocab.tokens  # test-only word, markup
    meta = read_json(out / paths.META)
    assert meta["kind"] == "text" and meta["input_shape"] == [4]
    assert meta["vocab_size"] == len(vocab.tokens) and meta["assets"] == [paths.VOCAB]
    assert manifest["counts"] == {"train": 2, "val": 2, "test": 4}
    arrays = {s: load_arrays("imdb", s, tmp_path) for s in paths.SPLITS}
    texts = {s: list(map(vocab.decode, a["x"], a["len"])) for s, a in arrays.items()}
    train_folder = set(tokenize(" ".join(REVIEWS["train", "pos"] + REVIEWS["train", "neg"])))
    assert set(vocab.tokens[2:]) < train_folder  # the words of val's half are unknown
    assert kept in texts["train"] + texts["val"]  # "A great film. Loved it!" cut to 4 words
    assert meta["truncate"].startswith(f"keep the {truncate}")
    assert vocab.keep == truncate  # predict cuts a new review the same way
    x, lengths = arrays["test"]["x"], arrays["test"]["len"]
    assert x.dtype == np.int32 and lengths.max() <= 4
    great = vocab.tokens.index("great")
    row = next(i for i in range(4) if x[i, 0] == great)  # "great great zyzzyva" (a positive)
    assert x[row, :3].tolist() == [great, great, UNK_INDEX] and lengths[row] == 3


@pytest.fixture(scope="module")
def trained_gru(tmp_path_factory):
    from nnlab.stages.evaluate import run as evaluate
    from nnlab.stages.train import run as train

    root = tmp_path_factory.mktemp("imdb_project")
    params = imdb_params()
    split = prepare(params, "imdb", root)
    train(params, "imdb_gru", root)
    evaluate(params, "imdb_gru", root)
    return root, params, split


def test_text_examples_and_predict_without_data_dir(trained_gru, tmp_path, monkeypatch, capsys):
    from nnlab.cli import main

    src, params, split = trained_gru
    assert len(set(split["class_counts"]["train"].values())) == 1  # stratified
    examples = (src / "reports/experiments/imdb_gru" / paths.FIGURES / paths.EXAMPLES).read_text()
    assert "P(positive) =" in examples and "most confidently wrong" in examples
    root = tmp_path / "copy"
    shutil.copytree(src / "models", root / "models")  # no data/: the checkpoint has the vocab
    (root / "review.txt").write_text("The acting was not good at all.<br />I did not like it.")
    (root / "empty.txt").write_text("... !!!")
    (root / "params.yaml").write_text(params_text(params))
    monkeypatch.chdir(root)
    assert main(["predict", "imdb_gru", "review.txt", "empty.txt"]) == 1  # one file failed
    out = capsys.readouterr().out.splitlines()
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
    records, report = read_texts(cfg, archive, str(archive))
    assert len(records) == 50000 and report["skipped_count"] == 0
    assert {(r["split"], r["label"]) for r in records} == {
        (s, lab) for s in ("train", "test") for lab in ("neg", "pos")
    }
