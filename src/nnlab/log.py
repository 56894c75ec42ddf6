"""nnlab's console output, and the rule for offline substitutes.

One stdlib logger, ``nnlab``, writing to stderr (so it shows in ``dvc repro``'s output) in one
format, on global rank 0 only: a DDP run says each thing once. Warnings stand out, because a
substitute dataset or base must never pass unnoticed. The CLI's result line is the only print.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nnlab")


class DownloadError(RuntimeError):
    """No mirror delivered a usable file."""


def _rank() -> int:
    """The global rank Lightning set (0 in a process that never imported it)."""
    module = sys.modules.get("lightning_utilities.core.rank_zero")
    return getattr(module.rank_zero_only, "rank", 0) or 0 if module else 0


class _Stderr(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a redirected or captured one too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _rank() == 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"\n*** nnlab WARNING: {message}\n"
        else:
            message = f"nnlab: {message}"
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


if not log.handlers:
    log.addHandler(_Stderr())
    log.setLevel(logging.INFO)
    log.propagate = False

info = log.info
warn = log.warning


def with_fallback(
    source: str,
    remote: Callable[[], dict[str, Any]],
    fallback: Callable[[], dict[str, Any]],
    *,
    dataset: str,
    fallback_name: str,
) -> dict[str, Any]:
    """Run ``remote`` or the offline ``fallback`` as ``source`` says: ``remote`` never falls
    back, ``auto`` falls back loudly when ``remote`` raises :class:`DownloadError`, and
    ``bundled``/``synthetic`` go straight to the substitute. Both return a manifest dict; the
    result carries ``source`` and, for a substitute, ``fallback_reason``."""
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
                f"    Results are NOT comparable to the real dataset; set source: remote to "
                f"fail instead."
            )
            reason = str(err)
    return {**fallback(), "source": fallback_name, "fallback_reason": reason}
