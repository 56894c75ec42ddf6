"""Text tables (:mod:`nnlab.data.text`'s loader): a CSV, TSV or JSONL file, or one per split; every
cell is data, never interpreted; a row with an empty text or label is skipped and counted."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path, PurePosixPath
from typing import Any

from nnlab.config import DataConfig
from nnlab.data import SPLIT_NAMES, skipped_report
from nnlab.data.sources import Limits, is_archive, read_files
from nnlab.files import decode_text

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".jsonl": None, ".ndjson": None}
EXPECTED = "expected a .csv, .tsv or .jsonl file, or one per split named train, val, test"


def _rows(
    data: bytes, name: str, where: str, cfg: DataConfig, dataset: str
) -> list[tuple[int, Any, Any]]:
    """(line number, text cell or None, label cell or None) of each row; errors name ``where``."""
    text = decode_text(data, where).removeprefix("\ufeff")
    cols = (cfg.text_column, cfg.label_column)
    delimiter = DELIMITERS[PurePosixPath(name).suffix.lower()]
    if delimiter is None:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{where}: line {n} is not JSON ({err})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: line {n} is not a JSON object")
            rows.append((n, *(record.get(c) for c in cols)))
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


def read_tables(
    cfg: DataConfig, src: Path, shown: str, dataset: str
) -> tuple[list[dict[str, str]], dict]:
    """The labelled texts of one table or of one table per split, and the skipped rows."""
    single = src.is_file() and not is_archive(src)
    if single:  # a table itself (from a mirror: named as its URL)
        name = PurePosixPath(shown.split(": ", 1)[-1]).name
        if PurePosixPath(name).suffix.lower() not in DELIMITERS:
            raise ValueError(f"{shown}: not a table ({EXPECTED})")
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
        raise ValueError(f"{shown}: several tables ({', '.join(sorted(splits))}); {EXPECTED}")
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
