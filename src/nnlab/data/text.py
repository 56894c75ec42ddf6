"""Text folders and tables -> ``max_len`` token ids and lengths by a train-split vocabulary."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from nnlab import paths
from nnlab.config import DataConfig
from nnlab.data import SPLIT_NAMES, Layout, draw_plan, label_counts, pick_labels, skipped_report
from nnlab.data.prepare import Prepared, planned_classes, refuse_empty
from nnlab.data.sources import Limits, download_raw, is_archive, read_files
from nnlab.data.synthetic import REVIEW_CLASSES, synthetic_reviews
from nnlab.files import decode_text, read_json, regular_file
from nnlab.paths import VOCAB as VOCAB_ASSET  # noqa: F401  (the name other layers import)
from nnlab.spec import DataSpec

PAD_INDEX, UNK_INDEX = 0, 1
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case words of ``text``: ``<br />`` and punctuation removed."""
    return _WORD.findall(_BREAK.sub(" ", text.lower()))


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]  # index -> word; tokens[0] = "<pad>", tokens[1] = "<unk>"
    max_len: int
    keep: str = "last"  # which max_len tokens of a longer text are kept: "first" or "last"

    @classmethod
    def build(
        cls, texts: Iterable[Sequence[str]], size: int, max_len: int, keep: str = "last"
    ) -> Vocabulary:
        """The ``size - 2`` most frequent words of ``texts`` (ties: alphabetical)."""
        counts = Counter(chain.from_iterable(texts))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(size - 2, 0)]
        return cls(("<pad>", "<unk>", *(w for w, _ in ranked)), max_len, keep)

    def encode(self, texts: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token lists -> (int32 ids (N, max_len) padded with 0, lengths after truncation)."""
        index = {w: i for i, w in enumerate(self.tokens)}
        ids = np.zeros((len(texts), self.max_len), dtype=np.int32)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for row, words in enumerate(texts):
            words = words[-self.max_len :] if self.keep == "last" else words[: self.max_len]
            ids[row, : len(words)] = [index.get(w, UNK_INDEX) for w in words]
            lengths[row] = len(words)
        return ids, lengths

    def decode(self, ids: Sequence[int], length: int | None = None) -> str:
        return " ".join(self.tokens[int(i)] for i in ids[: None if length is None else int(length)])

    def to_json(self) -> dict[str, Any]:
        tokenizer = "lower-case; <br /> and punctuation removed; [^\\W_]+('[^\\W_]+)*"
        about = {"tokenizer": tokenizer, "pad_index": PAD_INDEX, "unk_index": UNK_INDEX}
        return {**about, "max_len": self.max_len, "keep": self.keep, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Vocabulary:
        return cls(tuple(obj["tokens"]), int(obj["max_len"]), obj.get("keep", "last"))


SYNTHETIC = "synthetic reviews"
_PLACE = re.compile(rf"(?:^|/)(?:({'|'.join(SPLIT_NAMES)})/)?([^/]+)/([^/]+)\.txt$", re.I)
FOLDER_LAYOUT = "expected <split>/<label>/*.txt or <label>/*.txt"
DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".jsonl": None, ".ndjson": None}
TABLE_LAYOUT = "expected a .csv, .tsv or .jsonl file, or one per split named train, val, test"


def read_texts(cfg: DataConfig, src: Path, shown: str, name: str = "") -> tuple[list[dict], dict]:
    """The kind's labelled texts of a folder, archive (not extracted) or table; what was skipped."""
    if cfg.kind == "text_table":
        return read_tables(cfg, src, shown, name)
    wanted = cfg.class_names()

    def keep(name: str) -> bool:
        m = _PLACE.search(name)
        return m is not None and (wanted is None or m[2] in wanted)

    files, report = read_files(src, shown, Limits.of(cfg), keep)
    records, skipped = [], []
    for name, data in files:
        try:
            text = decode_text(data, name)
            reason = "" if text.strip() else "empty"
        except ValueError as err:
            reason = str(err).removeprefix(f"{name}: ")
        if reason:
            skipped.append({"file": name, "reason": reason})
        else:
            split, label, text_id = _PLACE.search(name).groups()
            split = SPLIT_NAMES[split.lower()] if split else "pool"
            records.append({"split": split, "label": label, "id": text_id, "text": text})
    if any(r["split"] != "pool" for r in records):  # a split layout: files beside it ignored
        report["ignored_files"] = sum(r["split"] == "pool" for r in records)
        records = [r for r in records if r["split"] != "pool"]
    return records, {**report, **skipped_report(skipped, shown, "texts")}


def _rows(data: bytes, name: str, where: str, cfg: DataConfig, dataset: str) -> list[tuple]:
    """(line number, text cell or None, label cell or None) of each row; errors name ``where``."""
    text = decode_text(data, where).removeprefix("\ufeff")
    cols = (cfg.text_column, cfg.label_column)
    delimiter = DELIMITERS[PurePosixPath(name).suffix.lower()]
    if delimiter is None:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            try:
                if line.strip():
                    record = json.loads(line)
                    rows.append((n, record.get(cols[0]), record.get(cols[1])))
            except (ValueError, AttributeError) as err:  # AttributeError: no object, no .get
                raise ValueError(f"{where}: line {n} is not a JSON object ({err})") from None
        return rows
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = reader.fieldnames or []
        for key, col in zip(("text_column", "label_column"), cols, strict=True):
            if col not in header:
                raise ValueError(
                    f"{where}: no column {col!r} (data.{dataset}.{key}; the "
                    f"header has {', '.join(map(repr, header)) or 'nothing'})"
                )
        return [(reader.line_num, *(row[c] for c in cols)) for row in reader]
    except csv.Error as err:
        raise ValueError(f"{where}: line {reader.line_num}: {err}") from None


def read_tables(cfg: DataConfig, src: Path, shown: str, dataset: str) -> tuple[list[dict], dict]:
    """text_table's texts of one table or one per split (cells are data), and the rows skipped."""
    single = src.is_file() and not is_archive(src)
    if single:  # a table itself (from a mirror: named as its URL)
        name = PurePosixPath(shown.split(": ", 1)[-1]).name
        if PurePosixPath(name).suffix.lower() not in DELIMITERS:
            raise ValueError(f"{shown}: not a table ({TABLE_LAYOUT})")
        if src.stat().st_size > Limits.of(cfg).max_bytes:
            raise ValueError(f"{shown}: over max_unpacked_mb={cfg.max_unpacked_mb} MiB")
        tables, report = [(name, src.read_bytes())], {}
    else:
        found, report = read_files(
            src, shown, Limits.of(cfg), lambda n: PurePosixPath(n).suffix.lower() in DELIMITERS
        )
        tables = list(found)
    splits = {n: SPLIT_NAMES.get(PurePosixPath(n).stem.lower()) for n, _ in tables}
    if len(tables) > 1 and not all(splits.values()):
        raise ValueError(f"{shown}: several tables ({', '.join(sorted(splits))}); {TABLE_LAYOUT}")
    records, skipped = [], []
    for name, data in tables:
        where = shown if single else f"{shown}: {name}"
        split = splits[name] or "pool"
        for line, text, cell in _rows(data, name, where, cfg, dataset):
            label = str(cell).strip() if type(cell) in (str, int) else ""
            if not isinstance(text, str) or not text.strip():
                reason = "no text"
            elif not label:
                reason = "no label" if cell in (None, "") else "label is not a string or integer"
            else:
                row_id = f"{name}:{line:09d}"
                records.append({"split": split, "label": label, "id": row_id, "text": text})
                continue
            skipped.append({"file": name, "row": line, "reason": reason})
    return records, {**report, **skipped_report(skipped, shown, "texts")}


def download(cfg: DataConfig, out_dir: Path, name: str) -> dict[str, Any]:
    """download@ of a text kind: the loader's records stored in ``texts.jsonl.gz``."""

    def store(src: Path, shown: str) -> dict[str, Any]:
        records, report = read_texts(cfg, src, shown, name)
        if not records:
            expected = FOLDER_LAYOUT if cfg.kind == "text_folder" else TABLE_LAYOUT
            raise ValueError(f"{shown}: no labelled texts found ({expected})")
        counts: dict[str, dict[str, int]] = {}
        for (s, label), n in sorted(Counter((r["split"], r["label"]) for r in records).items()):
            counts.setdefault(s, {})[label] = n
        pick_labels(counts, cfg, name, shown, "texts labelled")
        write_texts(records, out_dir / paths.RAW_TEXTS)
        classes = sorted({r["label"] for r in records})
        return {"counts": counts, "classes": classes, **report}

    made = {"generator": "nnlab.data.synthetic.synthetic_review", "classes": list(REVIEW_CLASSES)}
    made["written_by"] = f"split@{name} (synthetic_size, test_fraction, seed)"
    return download_raw(
        cfg, out_dir, name, store, {paths.RAW_ARCHIVE: None}, lambda: made, SYNTHETIC
    )


def write_texts(records: list[dict[str, str]], out: Path) -> None:
    """Store texts sorted by (split, label, id) as gzipped JSON lines."""
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=3) as fh:
        for r in sorted(records, key=lambda r: (r["split"], r["label"], r["id"])):
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def stored_texts(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(regular_file(path), "rt", encoding="utf-8") as fh:  # never a FIFO
        for n, line in enumerate(fh, 1):
            try:
                yield json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}: line {n} is not a text record ({err})") from None


def split(cfg: DataConfig, raw_dir: Path, seed: int, name: str) -> Prepared:
    """The stored texts, or (offline) the synthetic reviews made here from params and seed."""
    if read_json(raw_dir / paths.MANIFEST).get("source") != SYNTHETIC:
        records = stored_texts(raw_dir / paths.RAW_TEXTS)
    else:
        n_test = max(2, round(cfg.synthetic_size * cfg.test_fraction))
        records = synthetic_reviews(cfg.synthetic_size, n_test, seed)
    layout: Layout = {}
    for r in records:
        layout.setdefault(r["split"], {}).setdefault(r["label"], []).append(r["text"])
    counts = label_counts(layout)
    labels, classes, left_out = pick_labels(counts, cfg, name, str(raw_dir), "texts labelled")
    plan, manifest = draw_plan(layout, labels, cfg, seed, name, "texts")
    parts = {s: items[:quota] for s, (quota, items) in plan.items()}
    refuse_empty(name, {s: len(p) for s, p in parts.items()}, cfg)
    tokens = {s: [tokenize(t) for _, t in p] for s, p in parts.items()}
    vocab = Vocabulary.build(tokens["train"], cfg.vocab_size, cfg.max_len, keep=cfg.truncate)
    arrays, stats = {}, {}
    for s, p in parts.items():
        ids, lengths = vocab.encode(tokens[s])
        arrays[s] = {"x": ids, "y": np.array([k for k, _ in p], dtype=np.int64), "len": lengths}
        full = np.array([len(t) for t in tokens[s]])
        stats[s] = {
            "words_mean": round(float(full.mean()), 1),
            "words_median": float(np.median(full)),
            "truncated_fraction": round(float((full > cfg.max_len).mean()), 4),
            "unknown_fraction": round(1 - int((ids > 1).sum()) / max(int(lengths.sum()), 1), 4),
        }
    manifest |= {"vocabulary": {"size": len(vocab.tokens), "built_from": "train split only"}}
    manifest |= {"lengths": stats, **({"left_out": left_out} if left_out else {})}
    meta = {"vocab_size": len(vocab.tokens), "pad_index": PAD_INDEX, "max_len": cfg.max_len}
    meta |= {"truncate": f"keep the {cfg.truncate} max_len tokens", "assets": [paths.VOCAB]}
    return Prepared("text", classes, arrays, meta, manifest, {paths.VOCAB: vocab.to_json()})


def load_input(source: Path | bytes | str, spec) -> dict[str, np.ndarray]:
    """A text (a file, its bytes, or itself) -> token ids and length, by the checkpoint's vocab."""
    shown = f"{source}: " if isinstance(source, Path) else ""  # a file is named
    if isinstance(source, Path):
        source = source.read_bytes()
    if isinstance(source, bytes):
        source = decode_text(source, shown.rstrip(": ") or "the text")
    if not (words := tokenize(source)):
        raise ValueError(f"{shown}no words to classify")
    ids, lengths = Vocabulary.from_json(spec.extra["assets"][paths.VOCAB]).encode([words])
    return {"x": ids[0], "len": lengths[0]}


def spec(cfg: DataConfig, name: str, root: Path) -> DataSpec:
    """What split@<name> will produce, from params alone (``nnlab summary`` before any data)."""

    def found(src: Path) -> list[str]:
        return sorted({r["label"] for r in read_texts(cfg, src, str(src), name)[0]})

    classes = planned_classes(cfg, name, root, found, list(REVIEW_CLASSES))
    extra = {"pad_index": PAD_INDEX, "max_len": cfg.max_len}
    return DataSpec("text", (cfg.max_len,), tuple(classes), vocab_size=cfg.vocab_size, extra=extra)
