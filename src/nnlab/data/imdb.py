"""IMDB Large Movie Review Dataset (Maas et al., 2011): 25,000 training and 25,000 test reviews,
half positive, half negative.

download@imdb fetches the official ``aclImdb_v1.tar.gz`` (checksum verified), or reads the
archive or folder named by ``path:`` (the official layout, ``<split>/<pos|neg>/*.txt``), and
stores the labelled reviews as one compact file, ``reviews.jsonl.gz`` (one JSON object per
line: split, label, id, text). The tar members are read directly after every member has been
checked (:func:`nnlab.data.sources.check_archive`): writing 50,000 small files to disk and
reading them back is what made extraction slow, and the unlabelled ``unsup/`` reviews are not
needed. Offline, under ``source: auto``, a seeded synthetic review set stands in (loudly):
its labels depend on word order ("not good" is negative, "not bad at all" positive), so a
bag of words cannot solve it and a recurrent net can.

split@imdb tokenizes (:mod:`nnlab.data.text`), builds the vocabulary from the training split
only, and stores each review as its LAST ``max_len`` token ids plus its true length. The end
of a review usually holds the verdict ("... 8/10, go and see it"), and the RNN's last hidden
state is closest to the last tokens; Keras' ``pad_sequences`` keeps the end for the same
reason. The vocabulary goes beside the arrays as ``vocab.json`` and is listed in
``meta["assets"]``, so the checkpoint carries it (see :class:`nnlab.classifier.Classifier`).
"""

from __future__ import annotations

import gzip
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.config import DataConfig
from nnlab.data.prepare import Prepared, stratified_split, subsample
from nnlab.data.sources import check_archive, fetch, is_archive, with_fallback
from nnlab.data.text import PAD_INDEX, VOCAB_ASSET, Vocabulary, tokenize
from nnlab.files import file_digest

ARCHIVE = "aclImdb_v1.tar.gz"
SHA256 = "sha256:c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
REVIEWS = "reviews.jsonl.gz"
VOCAB = VOCAB_ASSET
CLASSES = ["negative", "positive"]
_FOLDER_LABEL = {"neg": 0, "pos": 1}
_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+)\.txt$")


# ----------------------------------------------------------------------------- raw reviews


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_archive(archive: Path) -> Iterator[dict[str, Any]]:
    """Labelled reviews of an aclImdb tar, read member by member; nothing is extracted.

    Every member is checked first: an unsafe archive is refused before anything is read.
    """
    check_archive(archive)
    with tarfile.open(archive) as tf:
        for member in tf:
            m = _MEMBER.search(member.name)
            if m is None or not member.isfile():
                continue
            fh = tf.extractfile(member)
            assert fh is not None
            text = _decode(fh.read(), f"{archive}:{member.name}")
            yield {"split": m[1], "label": _FOLDER_LABEL[m[2]], "id": m[3], "text": text}


def read_folder(folder: Path) -> Iterator[dict[str, Any]]:
    """Labelled reviews of an extracted aclImdb folder (``folder`` or ``folder/aclImdb``)."""
    base = folder / "aclImdb" if (folder / "aclImdb" / "train").is_dir() else folder
    for split in ("train", "test"):
        for sub, label in _FOLDER_LABEL.items():
            for f in sorted((base / split / sub).glob("*.txt")):
                yield {"split": split, "label": label, "id": f.stem,
                       "text": _decode(f.read_bytes(), str(f))}


def write_reviews(records: Iterator[dict[str, Any]], out: Path, origin: str) -> dict[str, Any]:
    """Store reviews sorted by (split, label, id) as gzipped JSON lines; returns counts."""
    rows = sorted(records, key=lambda r: (r["split"], r["label"], r["id"]))
    counts = {f"{s}/{c}": 0 for s in ("train", "test") for c in CLASSES}
    for r in rows:
        counts[f"{r['split']}/{CLASSES[r['label']]}"] += 1
    empty = [k for k, n in counts.items() if n == 0]
    if empty:
        raise ValueError(
            f"{origin}: no reviews for {', '.join(empty)} (expected <split>/<pos|neg>/*.txt "
            f"with split train and test)"
        )
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=3) as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return counts


def read_reviews(raw_dir: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """split -> (texts, labels) from ``reviews.jsonl.gz``."""
    path = raw_dir / REVIEWS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; rerun `nnlab download imdb`")
    texts: dict[str, list[str]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                r = json.loads(line)
                texts[r["split"]].append(r["text"])
                labels[r["split"]].append(int(r["label"]))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}: line {n} is not a review record ({err})") from None
    return {s: (texts[s], np.asarray(labels[s], dtype=np.int64)) for s in texts}


# ----------------------------------------------------------------------------- download


def _local(path: Path, out_dir: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"data.imdb.path: {path} does not exist")
    if path.is_dir():
        counts = write_reviews(read_folder(path), out_dir / REVIEWS, str(path))
        return {"path": str(path), "counts": counts}
    if not is_archive(path):
        raise ValueError(f"data.imdb.path: {path} is neither a folder nor a tar archive")
    counts = write_reviews(read_archive(path), out_dir / REVIEWS, str(path))
    # a local archive may be a repack: its checksum is recorded, not compared with the official
    return {"path": str(path), "checksum": "sha256:" + file_digest(path), "counts": counts}


def _remote(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    if cfg.path:
        return _local(Path(cfg.path).expanduser(), out_dir)
    urls = [m if m.endswith((".tar.gz", ".tgz")) else m.rstrip("/") + "/" + ARCHIVE
            for m in cfg.mirrors]
    archive = out_dir / ARCHIVE
    got = fetch(urls, archive, SHA256, timeout=cfg.timeout, retries=cfg.retries)
    try:
        counts = write_reviews(read_archive(archive), out_dir / REVIEWS, got["url"])
    finally:
        archive.unlink(missing_ok=True)  # the compact file replaces it
    return {"files": {ARCHIVE: got}, "counts": counts}


def download(cfg: DataConfig, out_dir: Path, seed: int) -> dict[str, Any]:
    if cfg.source == "bundled":
        raise ValueError("data.imdb.source: 'bundled' is not available for imdb "
                         "(use auto, remote or synthetic)")
    return with_fallback(
        cfg.source,
        lambda: _remote(cfg, out_dir),
        lambda: _synthetic(cfg, out_dir, seed),
        dataset="imdb",
        fallback_name="synthetic reviews",
    )


# ----------------------------------------------------------------------------- synthetic

_POSITIVE = ["good", "great", "excellent", "wonderful", "brilliant", "enjoyable", "funny",
             "moving", "clever", "beautiful"]
_NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "poor", "weak", "predictable",
             "silly", "clumsy"]
_ASPECTS = ["the acting", "the plot", "the story", "the script", "the music", "the ending",
            "the cast", "the direction", "the dialogue", "this movie", "the film",
            "the camera work"]
_FILLER = [
    "i saw it on a rainy sunday", "my friend did not want to come", "it is not a short film",
    "the cinema was not full", "we watched it at home", "it was made in 1998",
    "it runs for about two hours", "i had not read the book", "there is a dog in it",
    "the lead actor is not new to the genre", "my sister picked it", "the popcorn was cold",
    "it is based on a true story", "nobody in the room said a word", "i did not know the director",
    "the second half takes place in paris", "the trailer shows most of it",
]


def synthetic_review(rng: np.random.Generator, label: int) -> str:
    """One review whose label is carried by word order: "<aspect> was [not] <adj> [at all]".

    Each adjective and the word "not" are as frequent in positive as in negative reviews
    (negated half of the time, and "not" also occurs in neutral sentences): only the order
    "not" + adjective decides.
    """
    sentences = [str(s) for s in rng.choice(_FILLER, size=rng.integers(2, 7), replace=False)]
    for _ in range(rng.integers(1, 3)):
        negated = bool(rng.integers(2))
        words = _POSITIVE if label != negated else _NEGATIVE  # negation flips the polarity
        phrase = f"{rng.choice(_ASPECTS)} was {'not ' if negated else ''}{rng.choice(words)}"
        if negated and rng.random() < 0.5:
            phrase += " at all"
        sentences.insert(int(rng.integers(len(sentences) + 1)), phrase)
    text = ". ".join(sentences).capitalize() + "."
    return text.replace(". ", ". <br /><br />", 1) if rng.random() < 0.3 else text


def _synthetic(cfg: DataConfig, out_dir: Path, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = cfg.synthetic_size
    n_test = max(2, round(n * cfg.test_fraction))

    def records() -> Iterator[dict[str, Any]]:
        for i in range(n):
            label = i % 2
            split = "test" if i < n_test else "train"
            yield {"split": split, "label": label, "id": f"syn{i:06d}",
                   "text": synthetic_review(rng, label)}

    counts = write_reviews(records(), out_dir / REVIEWS, "synthetic")
    return {"files": {REVIEWS: {"url": "nnlab.data.imdb.synthetic_review"}}, "counts": counts,
            "seed": seed}


# ----------------------------------------------------------------------------- split


def split(cfg: DataConfig, raw_dir: Path, seed: int) -> Prepared:
    reviews = read_reviews(raw_dir)
    texts, y = reviews["train"]
    texts_t, y_t = reviews["test"]
    keep = subsample(y, cfg.max_samples, seed)
    keep_t = subsample(y_t, cfg.max_samples, seed)
    train_idx, val_idx = stratified_split(y[keep], [cfg.val_fraction], seed)
    parts = {
        "train": ([texts[i] for i in keep[train_idx]], y[keep][train_idx]),
        "val": ([texts[i] for i in keep[val_idx]], y[keep][val_idx]),
        "test": ([texts_t[i] for i in keep_t], y_t[keep_t]),
    }
    tokens = {s: [tokenize(t) for t in ts] for s, (ts, _) in parts.items()}
    vocab = Vocabulary.build(tokens["train"], cfg.vocab_size, cfg.max_len, keep="last")
    arrays, stats = {}, {}
    for s, (_, ys) in parts.items():
        ids, lengths = vocab.encode(tokens[s])
        arrays[s] = {"x": ids, "y": ys.astype(np.int64), "len": lengths}
        full = np.array([len(t) for t in tokens[s]])
        known = int((ids > 1).sum())
        stats[s] = {
            "words_mean": round(float(full.mean()), 1),
            "words_median": float(np.median(full)),
            "truncated_fraction": round(float((full > cfg.max_len).mean()), 4),
            "unknown_fraction": round(1 - known / max(int(lengths.sum()), 1), 4),
        }
    return Prepared(
        kind="text",
        classes=CLASSES,
        arrays=arrays,
        meta={"vocab_size": len(vocab), "pad_index": PAD_INDEX, "max_len": cfg.max_len,
              "truncate": "keep the last max_len tokens", "assets": [VOCAB]},
        manifest={"test": "official test set (or the synthetic test part)",
                  "vocabulary": {"size": len(vocab), "built_from": "train split only"},
                  "lengths": stats},
        files={VOCAB: vocab.to_json()},
    )


def load_input(path: Path, spec) -> dict[str, np.ndarray]:
    """A review in a text file -> token ids and length, with the vocabulary the model was
    trained with (carried by the checkpoint, so ``data/`` is not needed)."""
    vocab_json = spec.extra.get("assets", {}).get(VOCAB)
    if vocab_json is None:
        raise ValueError(f"{path}: the model carries no {VOCAB}; retrain it to predict on text")
    vocab = Vocabulary.from_json(vocab_json)
    words = tokenize(_decode(Path(path).read_bytes(), str(path)))
    if not words:
        raise ValueError(f"{path}: no words to classify")
    ids, lengths = vocab.encode([words])
    return {"x": ids[0], "len": lengths[0]}
