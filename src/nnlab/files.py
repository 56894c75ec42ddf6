"""Atomic, fsynced writes (a killed stage leaves nothing half-written) and one-line errors for
files that are not what a reader expects."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import signal
import stat
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync(path: str | Path, flags: int = os.O_RDONLY | os.O_DIRECTORY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(dest: Path, kind: str, suffix: str = "") -> Path:
    """A new name beside ``dest``; the caller creates it, so its modes follow the umask."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


@contextlib.contextmanager
def _space_named(folder: Path) -> Iterator[None]:
    """Any full-disk error (numpy's "N requested and M written") as "no space left on <folder>"."""
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC or "requested and" in str(err):
            raise OSError(errno.ENOSPC, f"no space left on {folder}") from None
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """A fresh folder that replaces ``dest`` on success (the old one put back if that fails)."""
    dest = Path(dest)
    tmp, old = _temporary(dest, "tmp"), _temporary(dest, "old")
    tmp.mkdir()
    try:
        with _space_named(dest.parent):
            yield tmp
            for folder, _, files in os.walk(tmp):
                for name in files:
                    if not os.path.islink(path := os.path.join(folder, name)):
                        fsync(path, os.O_RDONLY | os.O_NOFOLLOW)
                fsync(folder)
        if dest.exists() or dest.is_symlink():
            dest.rename(old)
        try:
            tmp.rename(dest)
        except BaseException:
            if old.exists() or old.is_symlink():
                old.rename(dest)
            raise
        fsync(dest.parent)
        if old.is_symlink() or old.is_file():
            old.unlink()
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(dest: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``dest``; it is renamed over ``dest`` only on success."""
    dest = Path(dest)
    tmp = _temporary(dest, "tmp", ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with _space_named(dest.parent), os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM raises SystemExit (143) inside, so every ``finally`` runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold ``lock`` (an flock) for ``what``; a second holder is refused at once, naming it."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RuntimeError(
                f"{lock}: {what} is already running (pid {holder}); wait for it or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def regular_file(path: str | Path) -> Path:
    """``path`` if a regular file, else one OSError naming it: a FIFO would block forever."""
    path = Path(path)
    try:
        kind = stat.filemode(path.stat().st_mode)[0]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as err:
        raise OSError(f"{path}: cannot read it ({err.strerror or err})") from None
    if kind == "d":
        raise IsADirectoryError(f"{path}: is a folder, not a file")
    if kind != "-":
        what = {"p": "a named pipe (FIFO)", "s": "a socket"}.get(kind, "a device")
        raise OSError(f"{path}: is {what}, not a regular file: refused, never read")
    return path


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(regular_file(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON file ({err})") from None


class UnsafeCheckpointError(ValueError):
    """A checkpoint that holds more than tensors and plain data: it is never unpickled."""


@contextlib.contextmanager
def reading_checkpoint(path: str | Path) -> Iterator[None]:
    """``torch.load(weights_only=True)``'s errors inside as one line naming ``path``."""
    regular_file(path)
    try:
        yield
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else (lines or [type(err).__name__])[0]
        raise UnsafeCheckpointError(
            f"{path}: refused: this checkpoint holds objects other than tensors and plain data "
            f"(a pickle could run code: {reason})"
        ) from None
    except (OSError, UnsafeCheckpointError):  # another file's, nested: it names that one
        raise
    except Exception as err:  # junk makes the unpickler raise anything (IndexError, KeyError...)
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated or corrupt? "
            f"{type(err).__name__}: {first})"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    with reading_checkpoint(path):
        return torch.load(path, map_location="cpu", weights_only=True)


def file_digest(path: str | Path) -> str:
    with open(regular_file(path), "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def load_array(path: str | Path) -> Any:
    """A memory-mapped ``.npy`` array (never a pickle nor an .npz), or a ValueError naming it."""
    from numpy.lib.format import open_memmap

    try:
        return open_memmap(regular_file(path), mode="r")
    except (ValueError, EOFError) as err:  # numpy's first sentence: no advice to unpickle
        reason = str(err).split(". ")[0].rstrip(".")
        raise ValueError(
            f"{path}: not a readable .npy array (truncated or corrupt? {reason})"
        ) from None


def decode_text(data: bytes, where: str | Path) -> str:
    """UTF-8 text without NUL bytes, or ValueError naming ``where``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if "\x00" in text:
        raise ValueError(f"{where}: not text (it holds NUL bytes)")
    return text
