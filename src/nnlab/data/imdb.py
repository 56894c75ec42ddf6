"""IMDB Large Movie Review Dataset (Maas et al., 2011): 25,000 training and 25,000 test reviews,
half positive, half negative.

download@imdb fetches the official ``aclImdb_v1.tar.gz`` (checksum verified), or reads the
archive or folder named by ``path:`` (the official layout, ``<split>/<pos|neg>/*.txt``), and
stores the labelled reviews as one compact file, ``reviews.jsonl.gz`` (one JSON object per
line: split, label, id, text). The archive (tar or zip, recognised by its content) is read
member by member after every member has been checked (:func:`nnlab.data.sources.
archive_files`): writing 50,000 small files to disk and reading them back is what made
extraction slow, and the unlabelled ``unsup/`` reviews are not needed. A folder is read
without following symlinks (they are skipped and counted). Offline, under ``source: auto``,
a seeded synthetic review set (:mod:`nnlab.data.synthetic`) stands in (loudly):
its labels depend on word order ("not good" is negative, "not bad at all" positive), so a
bag of words cannot solve it and a recurrent net can.

split@imdb tokenizes (:mod:`nnlab.data.text`), builds the vocabulary from the training split
only, and stores each review as ``max_len`` token ids plus its true length. A longer review
keeps its LAST ``max_len`` tokens unless params say otherwise (``truncate: last``, as Keras'
``pad_sequences``: the end of a review often holds the verdict, "... 8/10, go and see it").
``truncate: first`` keeps the beginning; params.yaml chooses it because the LSTM scored
higher with it on the real reviews (docs/lecture-notes.md). The vocabulary goes beside the
arrays as ``vocab.json`` and is listed in ``meta["assets"]``, so the checkpoint carries it
(see :class:`nnlab.classifier.Classifier`).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.config import DataConfig
from nnlab.data.prepare import Prepared, refuse_empty, stratified_split, subsample
from nnlab.data.sources import (
    ArchiveError,
    Limits,
    archive_files,
    fetch,
    local_path,
    parse_mirror,
    read_nofollow,
    walk_files,
)
from nnlab.data.synthetic import synthetic_review as synthetic_review  # re-exported
from nnlab.data.synthetic import synthetic_reviews
from nnlab.data.text import PAD_INDEX, VOCAB_ASSET, Vocabulary, tokenize
from nnlab.files import file_digest, read_json
from nnlab.log import DownloadError, with_fallback
from nnlab.spec import DataSpec

ARCHIVE = "aclImdb_v1.tar.gz"
SHA256 = "sha256:c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
REVIEWS = "reviews.jsonl.gz"
VOCAB = VOCAB_ASSET
CLASSES = ["negative", "positive"]
SYNTHETIC = "synthetic reviews"
_FOLDER_LABEL = {"neg": 0, "pos": 1}
_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+)\.txt$")


# ----------------------------------------------------------------------------- raw reviews


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_archive(archive: Path, limits: Limits | None = None, shown: str | None = None
                 ) -> Iterator[dict[str, Any]]:
    """Labelled reviews of an aclImdb tar or zip, read member by member; nothing is extracted.

    Every member is checked first: an unsafe archive is refused before anything is read.
    """
    shown = shown or str(archive)
    members = archive_files(archive, limits=limits or Limits(), shown=shown,
                            keep=lambda name: _MEMBER.search(name) is not None)
    for name, data in members:
        m = _MEMBER.search(name)
        assert m is not None
        text = _decode(data, f"{shown}:{name}")
        yield {"split": m[1], "label": _FOLDER_LABEL[m[2]], "id": m[3], "text": text}


def read_folder(folder: Path, skipped: dict[str, int] | None = None
                ) -> Iterator[dict[str, Any]]:
    """Labelled reviews of an extracted aclImdb folder (``folder`` or ``folder/aclImdb``).
    Symlinks and special files are never read; their counts go into ``skipped``."""
    base = folder / "aclImdb" if (folder / "aclImdb" / "train").is_dir() else folder
    files, counts = walk_files(base)
    if skipped is not None:
        skipped.update(counts)
    for rel in files:
        m = _MEMBER.search(rel.as_posix())
        if m is not None and len(rel.parts) == 3:
            yield {"split": m[1], "label": _FOLDER_LABEL[m[2]], "id": m[3],
                   "text": _decode(read_nofollow(base / rel), str(base / rel))}


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
    if cfg is not None and read_json(raw_dir / "manifest.json").get("source") == SYNTHETIC:
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


# ----------------------------------------------------------------------------- download


def _local(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    path = local_path(cfg.path, "data.imdb.path")
    shown = f"data.imdb.path: {path}"
    if path.is_dir():
        skipped: dict[str, int] = {}
        counts = write_reviews(read_folder(path, skipped), out_dir / REVIEWS, str(path))
        return {"path": str(path.resolve()), "counts": counts, **skipped}
    if not path.is_file():
        raise ValueError(f"{shown} is neither a folder nor a file")
    counts = write_reviews(read_archive(path, Limits.of(cfg), shown), out_dir / REVIEWS, shown)
    # a local archive may be a repack: its checksum is recorded, not compared with the official
    return {"path": str(path.resolve()), "checksum": "sha256:" + file_digest(path),
            "counts": counts}


def _remote(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    if cfg.path:
        return _local(cfg, out_dir)
    urls = []
    for entry in cfg.mirrors:
        url, _ = parse_mirror(entry)  # the official checksum is pinned here, not per mirror
        urls.append(url if url.endswith((".tar.gz", ".tgz")) else url.rstrip("/") + "/" + ARCHIVE)
    archive = out_dir / ARCHIVE
    got = fetch(urls, archive, SHA256, timeout=cfg.timeout, retries=cfg.retries,
                total_timeout=cfg.total_timeout)
    try:
        records = read_archive(archive, Limits.of(cfg), got["url"])
        counts = write_reviews(records, out_dir / REVIEWS, got["url"])
    except ArchiveError as err:  # a mirror's failure: under auto, fall back
        raise DownloadError(str(err)) from None
    finally:
        archive.unlink(missing_ok=True)  # the compact file replaces it
    return {"files": {ARCHIVE: got}, "counts": counts}


def download(cfg: DataConfig, out_dir: Path) -> dict[str, Any]:
    if cfg.source == "bundled":
        raise ValueError("data.imdb.source: 'bundled' is not available for imdb "
                         "(use auto, remote or synthetic)")
    if cfg.path:  # missing: an error under every source, never a fallback
        local_path(cfg.path, "data.imdb.path")
    return with_fallback(
        cfg.source,
        lambda: _remote(cfg, out_dir),
        lambda: {"generator": "nnlab.data.synthetic.synthetic_review",
                 "written_by": "split@imdb (synthetic_size, test_fraction, seed)"},
        dataset="imdb",
        fallback_name=SYNTHETIC,
    )


# ----------------------------------------------------------------------------- split


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
              "truncate": f"keep the {cfg.truncate} max_len tokens", "assets": [VOCAB]},
        manifest={"test": "official test set (or the synthetic test part)",
                  "vocabulary": {"size": len(vocab), "built_from": "train split only"},
                  "lengths": stats},
        files={VOCAB: vocab.to_json()},
    )


def load_input(source: Path | bytes | str, spec) -> dict[str, np.ndarray]:
    """A review (a text file, its bytes, or the text itself) -> token ids and length, with
    the vocabulary the model was trained with (carried by the checkpoint: no data/ needed)."""
    vocab_json = spec.extra.get("assets", {}).get(VOCAB)
    shown = f"{source}: " if isinstance(source, Path) else ""  # a file is named
    if vocab_json is None:
        raise ValueError(f"{shown}the model carries no {VOCAB}; retrain it to predict on text")
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
