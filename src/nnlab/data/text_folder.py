"""Text folders (:mod:`nnlab.data.text`'s loader): ``<split>/<label>/*.txt`` or ``<label>/*.txt``
read from a folder or an archive, not extracted; symlinked, empty or binary files skipped."""

from __future__ import annotations

import re
from pathlib import Path

from nnlab.config import DataConfig
from nnlab.data import SPLIT_NAMES, skipped_report
from nnlab.data.sources import Limits, read_files
from nnlab.files import decode_text

_PLACE = re.compile(rf"(?:^|/)(?:({'|'.join(SPLIT_NAMES)})/)?([^/]+)/([^/]+)\.txt$", re.I)
EXPECTED = "expected <split>/<label>/*.txt or <label>/*.txt"


def _place(name: str) -> tuple[str, str, str] | None:
    """(split or "pool", label, id) of a member name, or None for a file of no label folder."""
    if m := _PLACE.search(name):
        return SPLIT_NAMES[m[1].lower()] if m[1] else "pool", m[2], m[3]
    return None


def read_texts(cfg: DataConfig, src: Path, shown: str) -> tuple[list[dict[str, str]], dict]:
    """The labelled texts of a folder or an archive, and what was skipped (only ``classes:``)."""
    wanted = cfg.class_names()

    def keep(name: str) -> bool:
        place = _place(name)
        return place is not None and (wanted is None or place[1] in wanted)

    files, report = read_files(src, shown, Limits.of(cfg), keep)
    records, skipped = [], []
    for name, data in files:
        split, label, text_id = _place(name)
        try:
            text = decode_text(data, name)
            reason = "" if text.strip() else "empty"
        except ValueError as err:
            reason = str(err).removeprefix(f"{name}: ")
        if reason:
            skipped.append({"file": name, "reason": reason})
        else:
            records.append({"split": split, "label": label, "id": text_id, "text": text})
    if any(r["split"] != "pool" for r in records):  # a split layout: files beside it ignored
        report["ignored_files"] = sum(r["split"] == "pool" for r in records)
        records = [r for r in records if r["split"] != "pool"]
    return records, {**report, **skipped_report(skipped, shown, "texts")}
