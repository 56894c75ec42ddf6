"""Atomic file and directory writes: a crashed or killed stage never leaves a half-written
output, and never a temporary file.

* Outputs honour the umask (``mkstemp``/``mkdtemp`` create 0600/0700; they are widened to
  what a plain ``open``/``mkdir`` would have made).
* Data is fsynced before the rename that publishes it, and the folder after it.
* :func:`interruptible` turns SIGTERM into :class:`SystemExit` while a stage runs, so the
  ``finally`` clean-ups below run when ``dvc`` or a scheduler stops the process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (links are never followed)."""
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(folder)


@contextlib.contextmanager
def _space_named(folder: Path) -> Iterator[None]:
    """A full disk, however the writer reports it (numpy: "N requested and M written"), is
    one line naming the folder."""
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC or "requested and" in str(err):
            raise OSError(errno.ENOSPC, f"no space left on {folder}") from None
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``dest``; on success it replaces ``dest``.

    If the new folder cannot be moved into place, the old ``dest`` is put back.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        tmp.chmod(0o777 & ~umask())
        with _space_named(dest.parent):
            yield tmp
            _sync_tree(tmp)
        if dest.exists() or dest.is_symlink():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            dest.rename(old)
            try:
                tmp.rename(dest)
            except BaseException:
                old.rename(dest)
                raise
            fsync_dir(dest.parent)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            tmp.rename(dest)
            fsync_dir(dest.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(dest: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``dest``; it is renamed over ``dest`` only on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with _space_named(dest.parent), os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`SystemExit` (exit status 143) in the main thread,
    so every ``finally`` clean-up runs; the previous handler is restored afterwards.
    Outside the main thread (where handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold ``lock`` (an flock, released by the kernel when the process ends) for ``what``;
    a second holder is refused at once, in one line naming the lock and its holder."""
    import fcntl

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
    """``path`` if it is a regular file (links followed), else one OSError naming it: a FIFO, a
    device or a socket is never opened (opening a FIFO to read waits for a writer forever)."""
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
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a file that is not JSON is one ValueError naming it."""
    try:
        return json.loads(regular_file(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON file ({err})") from None


class UnsafeCheckpointError(ValueError):
    """A checkpoint that holds more than tensors and plain data: it is never unpickled."""


@contextlib.contextmanager
def reading_checkpoint(path: str | Path) -> Iterator[None]:
    """Turns what ``torch.load(weights_only=True)`` raises on ``path`` into one line naming
    the file: a pickle of anything but tensors and plain data is refused (nothing in it
    runs), and a truncated or corrupt file is said to be one."""
    import pickle

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
    except (OSError, UnsafeCheckpointError):  # (another file's, nested: it names that one)
        raise
    except Exception as err:  # junk makes the unpickler raise anything (IndexError, KeyError...)
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated or corrupt? "
            f"{type(err).__name__}: {first})"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's content: tensors and plain data only (see :func:`reading_checkpoint`)."""
    import torch

    with reading_checkpoint(path):
        return torch.load(path, map_location="cpu", weights_only=True)


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(regular_file(path), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_array(path: str | Path) -> Any:
    """A ``.npy`` array, memory-mapped (nothing read until indexed); a truncated or corrupt file,
    or one that holds objects (a pickle), is one ValueError naming it."""
    import numpy as np

    try:
        array = np.load(regular_file(path), mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as err:  # numpy's first sentence: no advice to unpickle
        reason = str(err).split(". ")[0].rstrip(".")
        raise ValueError(
            f"{path}: not a readable .npy array (truncated or corrupt? {reason})"
        ) from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise ValueError(f"{path}: not a .npy array (an .npz archive)")
    return array


def decode_text(data: bytes, where: str | Path) -> str:
    """UTF-8 text without NUL bytes, or ValueError naming ``where``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if "\x00" in text:
        raise ValueError(f"{where}: not text (it holds NUL bytes)")
    return text
