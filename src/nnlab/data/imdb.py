"""IMDB movie reviews (Maas et al., 2011), read as a text folder: ``<split>/<label>/*.txt``
with split train or test and label neg or pos (the unlabelled ``unsup/`` is left out).

download@imdb reads the official archive (checksum verified), or the archive or folder given as
``path:``, member by member without extracting, into one file, ``reviews.jsonl.gz``. Offline,
seeded synthetic reviews stand in; their labels depend on word order. split@imdb tokenizes,
builds the vocabulary from the training split only (``vocab.json``, carried by the checkpoint)
and stores ``max_len`` token ids per review plus its true length; ``truncate`` says which end
of a longer review is kept.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nnlab import paths
from nnlab.config import DataConfig
from nnlab.data.prepare import Prepared, refuse_empty, stratified_split, subsample
from nnlab.data.sources import Limits, download_raw, read_files
from nnlab.data.synthetic import synthetic_reviews
from nnlab.data.text import PAD_INDEX, Vocabulary, tokenize
from nnlab.files import read_json
from nnlab.spec import DataSpec

ARCHIVE = "aclImdb_v1.tar.gz"
SHA256 = "sha256:c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
REVIEWS = "reviews.jsonl.gz"
LABELS = ("neg", "pos")  # the label folders, in class order
CLASSES = ["negative", "positive"]
SYNTHETIC = "synthetic reviews"
_MEMBER = re.compile(rf"(?:^|/)(train|test)/({'|'.join(LABELS)})/([^/]+)\.txt$")


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_texts(src: Path, shown: str, limits: Limits
               ) -> tuple[Iterator[dict[str, Any]], dict[str, int]]:
    """Labelled reviews of a folder or an archive (every member checked first), and what
    walking a folder skipped (symlinks and special files are never read)."""
    files, skipped = read_files(src, shown, limits, lambda name: bool(_MEMBER.search(name)))

    def records() -> Iterator[dict[str, Any]]:
        for name, data in files:
            split, label, review_id = _MEMBER.search(name).groups()
            yield {"split": split, "label": LABELS.index(label), "id": review_id,
                   "text": _decode(data, f"{shown}: {name}")}

    return records(), skipped


def write_reviews(records: Iterator[dict[str, Any]], out: Path, origin: str
                  ) -> dict[str, dict[str, int]]:
    """Store reviews sorted by (split, label, id) as gzipped JSON lines; returns the counts."""
    rows = sorted(records, key=lambda r: (r["split"], r["label"], r["id"]))
    counts = {s: dict.fromkeys(CLASSES, 0) for s in ("train", "test")}
    for r in rows:
        counts[r["split"]][CLASSES[r["label"]]] += 1
    empty = [f"{s}/{c}" for s, by_class in counts.items() for c, n in by_class.items() if not n]
    if empty:
        raise ValueError(f"{origin}: no reviews for {', '.join(empty)} (expected "
                         f"<split>/<pos|neg>/*.txt with split train and test)")
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=3) as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return counts


def _stored_reviews(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; rerun `nnlab download imdb`")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                yield json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}: line {n} is not a review record ({err})") from None


def read_reviews(raw_dir: Path, cfg: DataConfig | None = None, seed: int = 0
                 ) -> dict[str, tuple[list[str], np.ndarray]]:
    """split -> (texts, labels): ``reviews.jsonl.gz``, or for the offline substitute the
    synthetic reviews made here from ``synthetic_size``, ``test_fraction`` and the seed."""
    if cfg is not None and read_json(raw_dir / paths.MANIFEST).get("source") == SYNTHETIC:
        n_test = max(2, round(cfg.synthetic_size * cfg.test_fraction))
        records = synthetic_reviews(cfg.synthetic_size, n_test, seed)
    else:
        records = _stored_reviews(raw_dir / REVIEWS)
    texts: dict[str, list[str]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for r in records:
        try:
            texts[r["split"]].append(r["text"])
            labels[r["split"]].append(int(r["label"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{raw_dir / REVIEWS}: not a review record ({err})") from None
    return {s: (texts[s], np.asarray(labels[s], dtype=np.int64)) for s in texts}


def download(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    def store(src: Path, shown: str) -> dict[str, Any]:
        records, skipped = read_texts(src, shown, Limits.of(cfg))
        return {"counts": write_reviews(records, out_dir / REVIEWS, shown), **skipped}

    made = {"generator": "nnlab.data.synthetic.synthetic_review",
            "written_by": "split@imdb (synthetic_size, test_fraction, seed)"}
    return download_raw(cfg, out_dir, "imdb", store, {ARCHIVE: SHA256}, lambda: made, SYNTHETIC)


def split(cfg: DataConfig, raw_dir: Path, seed: int) -> Prepared:
    reviews = read_reviews(raw_dir, cfg, seed)
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
    refuse_empty("imdb", {s: len(ys) for s, (_, ys) in parts.items()}, cfg)
    tokens = {s: [tokenize(t) for t in ts] for s, (ts, _) in parts.items()}
    vocab = Vocabulary.build(tokens["train"], cfg.vocab_size, cfg.max_len, keep=cfg.truncate)
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
              "truncate": f"keep the {cfg.truncate} max_len tokens", "assets": [paths.VOCAB]},
        manifest={"test": "official test set (or the synthetic test part)",
                  "vocabulary": {"size": len(vocab), "built_from": "train split only"},
                  "lengths": stats},
        files={paths.VOCAB: vocab.to_json()},
    )


def load_input(source: Path | bytes | str, spec) -> dict[str, np.ndarray]:
    """A review (a text file, its bytes, or the text itself) -> token ids and length, with
    the vocabulary the model was trained with (carried by the checkpoint: no data/ needed)."""
    vocab_json = spec.extra.get("assets", {}).get(paths.VOCAB)
    shown = f"{source}: " if isinstance(source, Path) else ""  # a file is named
    if vocab_json is None:
        raise ValueError(f"{shown}the model carries no {paths.VOCAB}; retrain it to predict on "
                         f"text")
    if isinstance(source, Path):
        source = source.read_bytes()
    text = _decode(source, shown.rstrip(": ") or "the review") if isinstance(source, bytes) \
        else source
    words = tokenize(text)
    if not words:
        raise ValueError(f"{shown}no words to classify")
    ids, lengths = Vocabulary.from_json(vocab_json).encode([words])
    return {"x": ids[0], "len": lengths[0]}


def spec(cfg: DataConfig) -> DataSpec:
    """What split@imdb will produce, from params alone (``nnlab summary`` before any data)."""
    return DataSpec("text", (cfg.max_len,), tuple(CLASSES), vocab_size=cfg.vocab_size,
                    extra={"pad_index": PAD_INDEX, "max_len": cfg.max_len})
