"""nnlab's console output (stderr, global rank 0, loud warnings) and the offline-fallback rule."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nnlab")


class DownloadError(RuntimeError):
    """No mirror delivered a usable file."""


class _Stderr(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a captured one too), on global rank 0 only."""

    def emit(self, record: logging.LogRecord) -> None:
        module = sys.modules.get("lightning_utilities.core.rank_zero")  # not imported: rank 0
        if module and getattr(module.rank_zero_only, "rank", 0):
            return
        text = record.getMessage()
        loud = record.levelno >= logging.WARNING
        sys.stderr.write(f"\n*** nnlab WARNING: {text}\n\n" if loud else f"nnlab: {text}\n")


if not log.handlers:
    log.addHandler(_Stderr())
    log.setLevel(logging.INFO)
    log.propagate = False

info = log.info
warn = log.warning


def one_line(text: object, limit: int = 300) -> str:
    """``text``'s lines joined by "; " (" " after a colon), whitespace runs as one space, cut."""
    out = ""
    for line in filter(None, (" ".join(line.split()) for line in str(text).splitlines())):
        out += (" " if out.endswith(":") else "; ") + line if out else line
    return out if len(out) <= limit else out[: limit - 3] + "..."


def with_fallback(
    source: str, remote: Callable, fallback: Callable, *, dataset: str, fallback_name: str
) -> dict[str, Any]:
    """``remote()`` or the offline ``fallback()``: source remote never falls back, auto falls back
    loudly on :class:`DownloadError`, bundled/synthetic always do."""
    if source in ("bundled", "synthetic"):
        info(f"{dataset}: using the {fallback_name} (source: {source})")
        reason = f"source: {source} in params.yaml"
    else:
        try:
            return {"source": "remote", **remote()}
        except DownloadError as err:
            if source == "remote":
                raise
            warn(
                f"{dataset}: remote source unreachable ({err}).\n"
                f"    Falling back to the {fallback_name.upper()} (source: auto).\n"
                "    Results are NOT comparable to the real dataset (source: remote would fail)."
            )
            reason = str(err)
    return {**fallback(), "source": fallback_name, "fallback_reason": reason}
