"""Getting raw data: checksummed downloads, safe archive extraction, the offline fallback rule.

* :func:`fetch` tries each mirror in turn, retries transient failures, verifies the checksum
  and writes atomically: a wrong or partial file never stays on disk.
* :func:`safe_extract` checks every member of a zip or tar before extracting anything.
* :func:`with_fallback` is the one rule for offline substitutes: ``remote`` never falls back,
  ``auto`` falls back loudly when the remote source fails, ``bundled``/``synthetic`` go
  straight to the substitute.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from nnlab.files import atomic_dir, atomic_file

USER_AGENT = "nnlab/0.1 (+https://github.com/)"


class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected checksum."""


class ChecksumError(DownloadError):
    pass


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the target directory, or is not a plain file."""


def warn(message: str) -> None:
    """A loud console message (stderr, so it shows in `dvc repro` output)."""
    print(f"\n*** nnlab WARNING: {message}\n", file=sys.stderr, flush=True)


def info(message: str) -> None:
    print(f"nnlab: {message}", file=sys.stderr, flush=True)


def _parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    if not checksum:
        return None
    algo, _, digest = checksum.partition(":")
    if not digest or algo not in hashlib.algorithms_available:
        raise ValueError(f"checksum must look like 'sha256:<hex>' or 'md5:<hex>', got {checksum!r}")
    return algo, digest.lower()


def _permanent(err: Exception) -> bool:
    """Errors where retrying the same mirror cannot help (fail fast)."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code < 500 and err.code != 429
    reason = getattr(err, "reason", err)
    if isinstance(reason, socket.gaierror):
        return True
    if isinstance(reason, OSError) and reason.errno in (
        errno.ECONNREFUSED,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
    ):
        return True
    return isinstance(err, ChecksumError | ValueError)


def _download_once(url: str, dest: Path, algo_digest: tuple[str, str] | None, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with atomic_file(dest) as out, urllib.request.urlopen(req, timeout=timeout) as resp:
        hasher = hashlib.new(algo_digest[0] if algo_digest else "sha256")
        expected = resp.headers.get("Content-Length")
        size = 0
        while chunk := resp.read(1 << 20):
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
        if expected is not None and size != int(expected):
            raise urllib.error.URLError(f"incomplete read: {size} of {expected} bytes")
        actual = hasher.hexdigest()
        if algo_digest and actual != algo_digest[1]:
            raise ChecksumError(
                f"{dest.name}: checksum mismatch from {url}: expected "
                f"{algo_digest[0]}:{algo_digest[1]}, got {algo_digest[0]}:{actual}"
            )
    return f"{algo_digest[0] if algo_digest else 'sha256'}:{actual}"


def fetch(
    urls: list[str],
    dest: str | Path,
    checksum: str | None = None,
    *,
    timeout: float = 10.0,
    retries: int = 2,
) -> dict[str, Any]:
    """Download ``dest`` from the first mirror that delivers the expected checksum.

    Returns ``{"url": ..., "checksum": ...}``. A file already at ``dest`` with the right
    checksum is kept. Raises :class:`DownloadError` listing every mirror's failure.
    """
    dest = Path(dest)
    algo_digest = _parse_checksum(checksum)
    if dest.exists() and algo_digest:
        from nnlab.files import file_digest

        if file_digest(dest, algo_digest[0]) == algo_digest[1]:
            return {"url": "cached", "checksum": checksum}
        dest.unlink()
    if not urls:
        raise DownloadError(f"{dest.name}: no mirror configured")
    failures: list[str] = []
    for url in urls:
        for attempt in range(retries + 1):
            try:
                digest = _download_once(url, dest, algo_digest, timeout)
                return {"url": url, "checksum": digest}
            except (urllib.error.URLError, OSError, ValueError, ChecksumError) as err:
                if isinstance(err, urllib.error.HTTPError):
                    failures.append(f"{url}: HTTP {err.code} {err.reason}")
                else:
                    failures.append(f"{url}: {getattr(err, 'reason', err)}")
                if _permanent(err) or attempt == retries:
                    break
                time.sleep(min(0.5 * 2**attempt, 4.0))
    if all("checksum mismatch" in f for f in failures):
        raise ChecksumError("; ".join(dict.fromkeys(failures)))
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))


# ----------------------------------------------------------------------------- archives


def _check_member(name: str, target: Path, link: str | None = None, hard: bool = False) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts:
        raise UnsafeArchiveError(f"member {name!r} has an absolute path or '..'")
    if link is not None:
        link_path = PurePosixPath(link)
        # a symlink points relative to its own folder, a tar hard link to the archive root
        resolved = (target / (PurePosixPath() if hard else path.parent) / link_path).resolve()
        if link_path.is_absolute() or not resolved.is_relative_to(target.resolve()):
            raise UnsafeArchiveError(f"member {name!r} links outside the target: {link!r}")


def check_archive(archive: str | Path) -> None:
    """Raise :class:`UnsafeArchiveError` if any member is unsafe; extract nothing."""
    archive = Path(archive)
    target = Path("/nnlab-extract-target")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for zi in zf.infolist():
                    _check_member(zi.filename, target)
                    mode = zi.external_attr >> 16
                    if mode and (mode & 0o170000) == 0o120000:
                        raise UnsafeArchiveError(f"member {zi.filename!r} is a link")
            return
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                if m.issym() or m.islnk():
                    _check_member(m.name, target, m.linkname, hard=m.islnk())
                elif m.isfile() or m.isdir():
                    _check_member(m.name, target)
                else:
                    raise UnsafeArchiveError(
                        f"member {m.name!r} is a device, FIFO or other special file"
                    )
    except UnsafeArchiveError as err:
        raise UnsafeArchiveError(f"{archive}: refused: {err}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise UnsafeArchiveError(f"{archive}: not a readable zip or tar archive: {err}") from None


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a zip or tar(.gz) into ``dest`` after checking every member; atomic."""
    archive = Path(archive)
    check_archive(archive)
    with atomic_dir(dest) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
    return Path(dest)


def is_archive(path: Path) -> bool:
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))


def copy_tree(src: Path, dest: Path) -> None:
    with atomic_dir(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, symlinks=False)


# ----------------------------------------------------------------------------- fallback rule


def with_fallback(
    source: str,
    remote: Callable[[], dict[str, Any]],
    fallback: Callable[[], dict[str, Any]],
    *,
    dataset: str,
    fallback_name: str,
) -> dict[str, Any]:
    """Run ``remote`` or the offline ``fallback`` according to ``source``.

    Both return a manifest dict; the result carries ``source`` and, for a fallback, why.
    """
    if source == "remote":
        manifest = remote()
        manifest.setdefault("source", "remote")
        return manifest
    if source in ("bundled", "synthetic"):
        info(f"{dataset}: using the {fallback_name} (source: {source})")
        manifest = fallback()
        manifest["source"] = fallback_name
        manifest["fallback_reason"] = f"source: {source} in params.yaml"
        return manifest
    try:
        manifest = remote()
        manifest.setdefault("source", "remote")
        return manifest
    except DownloadError as err:
        warn(
            f"{dataset}: remote source unreachable ({err}).\n"
            f"    Falling back to the {fallback_name.upper()} (source: auto).\n"
            f"    Results are NOT comparable to the real dataset; set source: remote to "
            f"fail instead."
        )
        manifest = fallback()
        manifest["source"] = fallback_name
        manifest["fallback_reason"] = str(err)
        return manifest
