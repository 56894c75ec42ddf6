"""Raw data: checksummed downloads, archives checked member by member (CVE-2025-4517), folders."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.client
import lzma
import os
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlparse

from nnlab.files import atomic_dir, atomic_file, file_digest
from nnlab.log import DownloadError, info, with_fallback

_MB = 1 << 20


class ArchiveError(ValueError):
    """An archive is damaged, not an archive, or ambiguous (one line naming it)."""


class UnsafeArchiveError(ArchiveError):
    """A member is a link, a special file, escapes the target, or the archive is a bomb."""


def parse_mirror(entry: str, name: str) -> tuple[str, str | None]:
    """``url#sha256=<hex>`` -> (url, "sha256:<hex>"), or (url, None); ``name`` ends a folder URL."""
    url, hash_sign, fragment = entry.partition("#")
    if "." not in PurePosixPath(urlparse(url).path).name:
        url = url.rstrip("/") + "/" + name
    algo, _, digest = fragment.partition("=")
    return url, f"{algo}:{digest.lower()}" if hash_sign else None


def data_path(path: str, root: Path) -> Path:
    """A ``path:`` as params.yaml writes it: relative to ``root``, absolute, or with ``~``."""
    return Path(root) / Path(path).expanduser()


def _failure(url: str, err: Exception) -> tuple[str, bool]:
    """One line naming ``url``, and whether a retry may help (a timeout, a drop, HTTP 5xx)."""
    if isinstance(err, urllib.error.HTTPError):
        return f"{url}: HTTP {err.code} {err.reason}", err.code >= 500 or err.code == 429
    if isinstance(err, DownloadError):  # a checksum mismatch
        return str(err), False
    reason = getattr(err, "reason", None) or err
    text = str(reason).strip().replace("\n", " ") or type(reason).__name__
    transient = isinstance(reason, TimeoutError | ConnectionError | http.client.IncompleteRead)
    transient &= not isinstance(reason, ConnectionRefusedError)
    return f"{url}: {type(reason).__name__}: {text}", transient


def _download_once(url: str, dest: Path, pin: str | None, cfg: Any) -> str:
    """The checksum of ``dest``, written whole and verified against ``pin`` ("algo:hex")."""
    deadline = time.monotonic() + cfg.total_timeout
    algo, _, digest = (pin or "sha256:").partition(":")
    hasher, size = hashlib.new(algo), 0
    req = urllib.request.Request(url, headers={"User-Agent": "nnlab/0.1"})
    wait = min(cfg.timeout, cfg.total_timeout)
    with atomic_file(dest) as out, urllib.request.urlopen(req, timeout=wait) as resp:
        expected = resp.headers.get("Content-Length")
        # read1: whatever has arrived, so a server trickling bytes meets the deadline too
        while chunk := resp.read1(_MB):
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not complete after total_timeout={cfg.total_timeout:g}s ({size} bytes)"
                )
        if expected is not None and expected.isdigit() and size != int(expected):
            raise ConnectionError(f"connection closed early ({size} of {expected} bytes)")
        if pin and hasher.hexdigest() != digest.lower():
            raise DownloadError(
                f"{dest.name}: checksum mismatch from {url}: expected "
                f"{algo}:{digest.lower()}, got {algo}:{hasher.hexdigest()}"
            )
    return f"{algo}:{hasher.hexdigest()}"


def fetch(dest: Path, checksum: str | None, cfg: Any, unpack: Callable | None) -> dict[str, Any]:
    """``{"url", "checksum", "pinned", **unpack(dest, url)}`` from the first mirror delivering
    ``dest`` verified (retrying); an ArchiveError in ``unpack`` moves on. Else every failure."""
    failures: list[str] = []
    for url, pin in (parse_mirror(e, dest.name) for e in cfg.mirrors):  # one or more
        pin, got = pin or checksum, None
        for attempt in range(cfg.retries + 1):
            try:
                got = _download_once(url, dest, pin, cfg)
                break
            except (OSError, http.client.HTTPException, ValueError, DownloadError) as err:
                text, transient = _failure(url, err)
                failures.append(text)
                if not transient or attempt == cfg.retries:
                    break
                time.sleep(min(0.5 * 2**attempt, 4.0))
        if got is None:
            continue
        if not pin:
            info(f"{url} has no pinned checksum; got {got} (append #{got.replace(':', '=')})")
        result = {"url": url, "checksum": got, "pinned": bool(pin)}
        if unpack is None:
            return result
        try:
            return {**result, **unpack(dest, url)}
        except ArchiveError as err:
            failures.append(str(err))
        finally:
            dest.unlink(missing_ok=True)
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))


class Limits(NamedTuple):
    """Caps on unpacking: total bytes, and the ratio of the archive and of members past 1 MiB."""

    max_bytes: int = 4096 * _MB
    max_ratio: float = 100.0

    @classmethod
    def of(cls, cfg: Any) -> Limits:
        return cls(cfg.max_unpacked_mb * _MB, cfg.max_ratio)


_TAR_DECOMPRESSORS = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}
_READ_ERRORS = (  # what reading a damaged archive raises, besides our own errors
    *(tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError),
    *(EOFError, OSError, RuntimeError, ValueError),
)
_NESTED = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".gz")


def _format(path: Path) -> str:
    """ "zip" or "tar" (plain or compressed), from the content; refused if it reads as both."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    tar = head[257:262] == b"ustar" or head.startswith(tuple(_TAR_DECOMPRESSORS))
    zip_ = head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
    if tar and (zip_ or zipfile.is_zipfile(path)):
        raise UnsafeArchiveError("reads both as a tar and as a zip (ambiguous)")
    if not (tar or zip_):
        raise UnsafeArchiveError("neither a folder nor a zip/tar archive")
    return "zip" if zip_ else "tar"


def is_archive(path: Path) -> bool:
    """Whether a file reads as a zip or a (compressed) tar, from its content."""
    try:
        return bool(_format(path))
    except (ArchiveError, OSError):
        return False


def _safe_parts(name: str) -> tuple[str, ...]:
    parts = PurePosixPath(name).parts
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or ".." in parts:
        raise UnsafeArchiveError(f"member {name!r} has a bad name, an absolute path or '..'")
    return parts


def _ratio_check(what: str, unpacked: int, packed: int, limits: Limits) -> None:
    if unpacked > _MB and unpacked > limits.max_ratio * max(packed, 1):  # past 1 MiB only
        raise UnsafeArchiveError(
            f"{what} unpacks {unpacked} bytes from {packed} (ratio over max_ratio="
            f"{limits.max_ratio:g}: a compression bomb?)"
        )


def _zip_members(path: Path, limits: Limits) -> Iterator[tuple]:
    with zipfile.ZipFile(path) as zf:
        for zi in zf.infolist():
            mode = zi.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(
                    f"member {zi.filename!r} is a link or special file (mode {oct(mode)})"
                )
            _ratio_check(f"member {zi.filename!r}", zi.file_size, zi.compress_size, limits)
            is_dir = zi.is_dir() or kind == stat.S_IFDIR
            yield _safe_parts(zi.filename), is_dir, zi.file_size, lambda zi=zi: zf.open(zi)


def _tar_members(path: Path, limits: Limits) -> Iterator[tuple]:
    with open(path, "rb") as raw:
        head = raw.read(6)
    opener = next((o for m, o in _TAR_DECOMPRESSORS.items() if head.startswith(m)), None)
    if opener:  # the whole stream, headers included, is measured before tarfile reads it
        size, cap = 0, min(max(_MB, limits.max_ratio * path.stat().st_size), limits.max_bytes * 2)
        with opener(path) as stream:
            while chunk := stream.read(_MB):
                if (size := size + len(chunk)) > cap:
                    raise UnsafeArchiveError(
                        f"the tar stream unpacks to over max_ratio={limits.max_ratio:g} times "
                        f"its size or max_unpacked_mb (a compression bomb?)"
                    )
    with tarfile.open(path, mode="r:*") as tf:
        for m in tf:
            if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
                kind = "symlink" if m.issym() else "hard link" if m.islnk() else None
                kind = kind or "device, FIFO or other special file"
                raise UnsafeArchiveError(f"member {m.name!r} is a {kind}")
            yield _safe_parts(m.name), m.isdir(), m.size, lambda m=m: tf.extractfile(m)
        # tarfile ends quietly at an unreadable header or a cut: require the end marker
        tf.fileobj.seek(tf.offset)
        if tf.fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
            raise ArchiveError(
                f"no end-of-archive marker after {len(tf.members)} members "
                f"(truncated, or a damaged header at byte {tf.offset})"
            )


def _archive_files(
    src: Path, shown: str, limits: Limits, keep: Callable[[str], bool]
) -> Iterator[tuple[str, bytes]]:
    """The checked members of a zip or tar, then the whole archive; any failure names ``shown``."""
    total, seen, files = 0, {}, []
    try:
        members = _zip_members if _format(src) == "zip" else _tar_members
        for parts, is_dir, size, open_member in members(src, limits):
            name, parents = "/".join(parts), [parts[:i] for i in range(1, len(parts))]
            if any(seen.get(p) is False for p in parents):
                raise UnsafeArchiveError(f"member {name!r} is both a file and a folder")
            if (not is_dir and (not parts or parts in seen)) or seen.get(parts) is False:
                raise UnsafeArchiveError(f"member {name!r} appears twice or has no file name")
            seen.update(dict.fromkeys(parents, True))
            seen[parts] = is_dir
            if is_dir:
                continue
            files.append(name.lower())
            if (total := total + size) > limits.max_bytes:
                raise UnsafeArchiveError(
                    f"unpacks to over max_unpacked_mb={limits.max_bytes // _MB} MiB"
                )
            if keep(name):
                with open_member() as fh:
                    yield name, fh.read()
        _ratio_check("the archive", total, src.stat().st_size, limits)
        if files and all(f.endswith(_NESTED) for f in files):
            raise UnsafeArchiveError("holds only nested archives (give the inner one instead)")
    except ArchiveError as err:
        prefix = "refused" if isinstance(err, UnsafeArchiveError) else "damaged archive"
        raise type(err)(f"{shown}: {prefix}: {err}") from None
    except _READ_ERRORS as err:
        text = str(err).strip().replace("\n", " ") or type(err).__name__
        raise ArchiveError(f"{shown}: damaged archive ({type(err).__name__}: {text})") from None


def read_files(
    src: Path, shown: str, limits: Limits, keep: Callable[[str], bool]
) -> tuple[Iterator[tuple[str, bytes]], dict[str, int]]:
    """Files ``keep`` accepts, read one by one, and counts of a folder's links and special files."""
    if not src.is_dir():
        return _archive_files(src, shown, limits, keep), {}
    files, skipped = [], {"skipped_symlinks": 0, "skipped_special": 0}

    def refuse(err: OSError) -> None:
        raise ValueError(f"{err.filename}: cannot read this folder ({err.strerror})")

    for folder, dirs, names in os.walk(src, onerror=refuse):
        for name in dirs + names:
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if stat.S_ISLNK(mode):
                skipped["skipped_symlinks"] += 1
            elif stat.S_ISREG(mode):
                files.append(Path(folder, name).relative_to(src))
            elif not stat.S_ISDIR(mode):
                skipped["skipped_special"] += 1

    def contents() -> Iterator[tuple[str, bytes]]:
        for name in (f.as_posix() for f in sorted(files) if keep(f.as_posix())):
            try:  # a link swapped in meanwhile is refused
                fd = os.open(src / name, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as err:
                raise ValueError(f"{src / name}: cannot read ({err.strerror})") from None
            with os.fdopen(fd, "rb") as fh:
                yield name, fh.read()

    return contents(), skipped


def unpack_tree(src: Path, dest: Path, shown: str, limits: Limits) -> dict[str, int]:
    """A folder's regular files copied, or an archive extracted, to ``dest``: all or nothing."""
    files, skipped = read_files(src, shown, limits, keep=lambda name: True)
    with atomic_dir(dest) as tmp:
        for name, data in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp / name, "xb") as out:
                out.write(data)
    if any(skipped.values()):
        info(
            f"{src}: skipped {skipped['skipped_symlinks']} symlinks and "
            f"{skipped['skipped_special']} special files (links are never followed)"
        )
    return skipped


def download_raw(
    cfg: Any,
    out_dir: Path,
    dataset: str,
    store: Callable[[Path, str], dict],
    files: dict[str, str | None],
    fallback: Callable[[], dict[str, Any]],
    fallback_name: str,
    unpack: bool = True,
) -> dict[str, Any]:
    """The manifest of ``path:`` given to ``store``, or of ``files`` downloaded, or the fallback."""
    key = f"data.{dataset}.path"
    src = Path(cfg.path).expanduser() if cfg.path else None
    if src and not src.exists():
        raise FileNotFoundError(f"{key}: {src} does not exist")
    if src and not (src.is_dir() or src.is_file()):
        raise ValueError(f"{key}: {src} is neither a folder nor a file")

    def real() -> dict[str, Any]:
        if src is not None:
            manifest = {"path": str(src.resolve()), **store(src, f"{key}: {src}")}
            if src.is_file():  # may be a repack: its checksum is recorded, not compared
                manifest["checksum"] = "sha256:" + file_digest(src)
            return manifest
        manifest = {"files": {}}
        for name, checksum in files.items():
            got = fetch(out_dir / name, checksum, cfg, store if unpack else None)
            manifest["files"][name] = {k: got.pop(k) for k in ("url", "checksum", "pinned")}
            manifest.update(got)
        return manifest

    return with_fallback(cfg.source, real, fallback, dataset=dataset, fallback_name=fallback_name)
