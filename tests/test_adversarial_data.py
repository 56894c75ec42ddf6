"""Hostile inputs for the data layer, offline: a refused input gives ONE line naming the file,
URL or key, and leaves the earlier output, no temporary file and nothing outside the project."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnlab import paths
from nnlab.data.images import ImageReadError, load_image
from nnlab.files import write_json
from nnlab.log import DownloadError
from nnlab.stages.download import run as run_download
from nnlab.stages.split import run as run_split
from tests.conftest import REPO, tiny_params
from tests.http_server import dead_url, raw_server, serve

SECRET = b"outside the project: must never change\n"


def _jpeg(i: int) -> bytes:
    rng = np.random.default_rng(i)
    arr = np.clip(rng.normal((200, 60, 40), 20, (12, 12, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


GOOD = [(f"{c}/{c[:-1]}.{i}.jpg", _jpeg(i)) for c in ("cats", "dogs") for i in range(3)]


def _png_header(width: int, height: int) -> bytes:  # a 1x1 PNG that claims width x height
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(data[12:29]))
    return bytes(data)


def _tar(path: Path, entries, mode: str = "w:gz") -> Path:
    """entries: (name, data or None, {TarInfo attributes}); data None means no payload."""
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tf:
        for name, data, attrs in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data) if data is not None else 0
            for key, value in attrs.items():
                setattr(info, key, value)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


TAR_GOOD = [(n, d, {}) for n, d in GOOD]


def _tgz(*extra, mode: str = "w:gz"):
    """A builder of a tar (gzipped by default) of the good photos and ``extra`` members."""
    return lambda t: _tar(t / f"a.tar{mode[1:].replace(':', '.')}", [*TAR_GOOD, *extra], mode)


def _zip(path: Path, entries, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _zipped(*extra):
    """A builder of a zip of the good photos and ``extra`` members."""
    return lambda t: _zip(t / "a.zip", [*GOOD, *extra])


def _symlink_zipinfo(name: str) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3
    zi.external_attr = 0o120777 << 16
    return zi


def _link(target: str, hard: bool = False) -> dict:
    return {"type": tarfile.LNKTYPE if hard else tarfile.SYMTYPE, "linkname": target}


def _cve_chain() -> list:
    """CVE-2025-4517: symlinks whose text stays inside the archive but, followed, climb out."""
    long = ["d" * 240, "e" * 240]
    return [
        (long[0], None, {"type": tarfile.DIRTYPE}),
        (f"{long[0]}/{long[1]}", None, {"type": tarfile.DIRTYPE}),
        (f"{long[0]}/up", None, _link("..")),
        (f"{long[0]}/{long[1]}/up", None, _link("..")),
        ("escape", None, _link(f"{long[0]}/{long[1]}/up/up/../..")),
        ("escape/outside/pwned.jpg", _jpeg(9), {}),
        ("hardlink", None, _link("escape/outside/secret.txt", hard=True)),
        ("hardlink", b"overwritten", {}),
    ]


def _patched(path: Path, *edits: tuple[int, bytes]) -> Path:
    data = bytearray(path.read_bytes())
    for offset, new in edits:
        data[offset : offset + len(new)] = new
    path.write_bytes(bytes(data))
    return path


def _lying_zip(t: Path) -> Path:
    """A zip whose central directory and local header say 100 bytes for a 2 MiB member."""
    path = _zip(t / "lying.zip", [*GOOD, ("cats/big.jpg", b"\0" * (2 << 20))])
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo("cats/big.jpg").header_offset
    central = path.read_bytes().rindex(b"PK\x01\x02")  # the last central record: the big one
    return _patched(
        path, (local + 22, struct.pack("<I", 100)), (central + 24, struct.pack("<I", 100))
    )


def _bad_crc_zip(t: Path) -> Path:
    path = _zip(t / "crc.zip", GOOD, compression=zipfile.ZIP_STORED)
    return _patched(path, (path.read_bytes().index(b"\xff\xd8") + 40, b"\0" * 20))


def _lying_tar_size(t: Path) -> Path:
    """The first member's size field says 1 byte: the rest of its data is read as headers."""
    path = _patched(_tgz(mode="w")(t), (124, b"%011o\0" % 1))
    header = path.read_bytes()[:512]
    return _patched(path, (148, b"%06o\0 " % sum(header[:148] + b" " * 8 + header[156:])))


def _inner_zip(t: Path) -> tuple:
    return ("photos.zip", _zip(t / "inner.zip", GOOD).read_bytes(), {})


def _truncated(path: Path, keep: float = 0.6) -> Path:
    return _write(path, path.read_bytes()[: int(path.stat().st_size * keep)])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


DOTDOT = r"absolute path or '\.\.'"
BOMB = {"max_unpacked_mb": 64}  # room for the ratio check to speak first
# id -> (builder(t) -> input path, error regex[, params]); every one must be refused
ARCHIVES = {
    "tar-cve-2025-4517-symlink-chain": (_tgz(*_cve_chain(), mode="w"), r"symlink"),
    "tar-absolute-name": (lambda t: _tgz((str(t / "outside/abs.jpg"), b"x", {}))(t), DOTDOT),
    "tar-dotdot": (_tgz(("cats/../../../outside/x.jpg", b"x", {})), DOTDOT),
    "tar-hardlink": (_tgz(("cats/h.jpg", None, _link("cats/cat.0.jpg", hard=True))), r"hard link"),
    "tar-char-device": (_tgz(("cats/dev", None, {"type": tarfile.CHRTYPE})), r"device, FIFO"),
    "tar-duplicate-member": (_tgz(("cats/cat.0.jpg", b"replaced", {})), r"appears twice"),
    "tar-gz-bomb-ratio": (_tgz(("cats/zeros.jpg", b"\0" * (24 << 20), {})), r"max_ratio", BOMB),
    "tar-bomb-size": (_tgz(("cats/big.jpg", os.urandom(3 << 20), {}), mode="w"), r"unpacked_mb"),
    "tar-lying-size-field": (_lying_tar_size, r"damaged archive"),
    "tar-truncated-gz": (lambda t: _truncated(_tgz()(t)), r"damaged archive"),
    "tar-cut-at-a-member": (lambda t: _truncated(_tgz(mode="w")(t), 0.3), r"no end-of-archive"),
    "zip-symlink": (_zipped((_symlink_zipinfo("cats/s.jpg"), "../../x")), r"link or special"),
    "zip-dotdot": (_zipped(("cats/../../x.jpg", b"x")), DOTDOT),
    "zip-bomb-ratio": (_zipped(("cats/zeros.jpg", b"\0" * (24 << 20))), r"max_ratio", BOMB),
    "zip-lying-header": (_lying_zip, r"damaged archive"),
    "zip-bad-crc": (_bad_crc_zip, r"damaged archive.*CRC"),
    "zip-truncated": (lambda t: _truncated(_zipped()(t)), r"damaged archive"),
    "zip-file-and-folder": (
        _zipped(("cats/x", b"file"), ("cats/x/y.jpg", b"x")),
        r"both a file and a folder|damaged archive",
    ),
    "format-tar-ending-in-zip": (
        lambda t: _tar(t / "o.tar", [TAR_GOOD[0], _inner_zip(t)], mode="w"),
        r"both as a tar and",
    ),
    "format-only-nested-archive": (lambda t: _tar(t / "a.tgz", [_inner_zip(t)]), r"only nested"),
    "format-not-an-archive": (lambda t: _write(t / "a.zip", b"text\n"), r"neither a folder nor"),
    "format-gzip-of-non-tar": (
        lambda t: _write(t / "photos.tar.gz", gzip.compress(b"hello " * 300)),
        r"damaged archive",
    ),
    "imdb-zip-no-reviews": (lambda t: _zip(t / "aclImdb.zip", GOOD), r"no labelled texts found"),
    "imdb-tar-symlink-review": (
        lambda t: _tar(t / "acl.tgz", [("aclImdb/train/pos/1_9.txt", None, _link("/etc/passwd"))]),
        r"symlink",
    ),
}


def _snapshot(root: Path) -> dict[str, object]:
    """Every entry under root (links not followed) -> its link target, content or None."""
    return {
        str(p.relative_to(root)): (
            os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
        )
        for p in root.rglob("*")
    }


class World:
    """A temporary project with earlier outputs, a secret file beside it, and snapshots."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "project"
        self.inputs = tmp / "in"
        self.inputs.mkdir()
        (tmp / "outside").mkdir()
        (tmp / "outside" / "secret.txt").write_bytes(SECRET)
        for ds in ("mnist", "cats_vs_dogs", "imdb"):
            for stage in ("raw", "split"):
                write_json(self.root / "data" / stage / ds / paths.MANIFEST, {"earlier": "output"})

    def freeze(self) -> None:
        self.before = _snapshot(self.tmp)
        self.siblings = sorted(p.name for p in self.tmp.parent.iterdir())

    def assert_untouched(self, dataset: str | None = None) -> None:
        """Nothing changed (but ``data/raw/<dataset>``), no temp file, nothing beside tmp."""
        out = f"project/data/raw/{dataset}"

        def keep(snap):
            return {k: v for k, v in snap.items() if dataset is None or not k.startswith(out)}

        after = _snapshot(self.tmp)
        assert keep(after) == keep(self.before)
        assert not [k for k in after if Path(k).name.startswith(".")], after
        assert sorted(p.name for p in self.tmp.parent.iterdir()) == self.siblings

    def refuses(self, call, exc, pattern: str, names: str) -> None:
        self.freeze()
        with pytest.raises(exc) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg.strip(), msg  # one line
        assert names in msg, msg
        assert ".tmp-" not in msg and ".part" not in msg, msg  # never a temp path
        assert re.search(pattern, msg), msg
        self.assert_untouched()


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


BLOCKS = {
    "cats_vs_dogs": {"kind": "image_folder", "image_size": 16, "split_sizes": [2, 2, 2]},
    "imdb": {"kind": "text_folder", "max_unpacked_mb": 20},
    "mnist": {"kind": "mnist"},
}


def _params(dataset: str, **block):
    base = {"source": "remote", "retries": 0, "timeout": 2, "max_unpacked_mb": 2}
    return tiny_params(**{f"data.{dataset}": {**base, **BLOCKS[dataset], **block}})


REVIEWS = [
    (f"aclImdb/{s}/{lab}/{i}_5.txt", f"review {s} {lab} {i}".encode())
    for s in ("train", "test")
    for lab in ("pos", "neg")
    for i in range(2)
]
# id -> (builder(t) -> input path, class counts per split)
GOOD_ARCHIVES = {
    "imdb-zip": (lambda t: _zip(t / "aclImdb.zip", REVIEWS), {"neg": 2, "pos": 2}),
    "tar-bz2": (lambda t: _tar(t / "good.tar.bz2", TAR_GOOD, "w:bz2"), {"cats": 3, "dogs": 3}),
}


@pytest.mark.parametrize("case", [*ARCHIVES, *GOOD_ARCHIVES])
def test_archive_as_path_is_read_whole_or_refused_never_a_fallback(world, case):
    build, expected, *block = {**ARCHIVES, **GOOD_ARCHIVES}[case]
    dataset = "imdb" if case.startswith("imdb") else "cats_vs_dogs"
    archive = build(world.inputs)
    params = _params(dataset, source="auto", path=str(archive), **(block[0] if block else {}))
    call = lambda: run_download(params, dataset, world.root)  # noqa: E731
    if case in ARCHIVES:
        world.refuses(call, ValueError, expected, f"data.{dataset}.path: {archive}")
        return
    world.freeze()
    manifest = call()
    world.assert_untouched(dataset)
    splits = ("train", "test") if dataset == "imdb" else ("pool",)
    assert manifest["counts"] == dict.fromkeys(splits, expected)


def _folder(root: Path, files: list[tuple[str, bytes]]) -> Path:
    for name, data in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_folder_links_and_special_files_are_skipped_and_counted_never_followed(world):
    src = _folder(world.inputs / "photos", GOOD)
    (src / "cats" / "cat.9.jpg").symlink_to(world.tmp / "outside" / "secret.txt")
    (src / "cats" / "loop").symlink_to(src / "cats")
    (src / "dogs" / "up").symlink_to("..")
    (src / "cats" / "etc").symlink_to("/etc")
    os.mkfifo(src / "cats" / "pipe.jpg")
    world.freeze()
    t0 = time.perf_counter()
    manifest = run_download(_params("cats_vs_dogs", path=str(src)), "cats_vs_dogs", world.root)
    assert time.perf_counter() - t0 < 10  # no hang on a loop or a FIFO
    world.assert_untouched("cats_vs_dogs")
    assert (manifest["skipped_symlinks"], manifest["skipped_special"]) == (4, 1)
    images = world.root / "data/raw/cats_vs_dogs/images"
    copied = sorted(str(p.relative_to(images)) for p in images.rglob("*"))
    assert copied == sorted(["cats", "dogs", *(n for n, _ in GOOD)])
    assert not any(p.is_symlink() for p in images.rglob("*"))


def test_text_folder_symlinked_empty_or_binary_review_is_skipped_and_counted(world, capsys):
    src = _folder(world.inputs, REVIEWS)
    (src / "aclImdb/train/pos/1_9.txt").symlink_to(world.tmp / "outside" / "secret.txt")
    (src / "aclImdb/train/neg/loop").symlink_to(src / "aclImdb")
    (src / "aclImdb/train/pos/2_9.txt").write_text("  \n")
    (src / "aclImdb/train/pos/3_9.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    (src / "aclImdb/test/neg/4_1.txt").write_bytes("caf\xe9".encode("latin-1"))
    world.freeze()
    manifest = run_download(_params("imdb", path=str(src)), "imdb", world.root)
    world.assert_untouched("imdb")
    assert manifest["skipped_symlinks"] == 2
    assert {s["file"].split("/", 1)[1]: s["reason"][:13] for s in manifest["skipped"]} == {
        "train/pos/2_9.txt": "empty",
        "train/pos/3_9.txt": "not UTF-8 tex",
        "test/neg/4_1.txt": "not UTF-8 tex",
    }
    assert manifest["skipped_count"] == 3 and "skipped 3 texts" in capsys.readouterr().err
    assert manifest["counts"]["train"]["pos"] == 2
    raw = (world.root / "data/raw/imdb" / paths.RAW_TEXTS).read_bytes()
    assert b"outside the project" not in gzip.decompress(raw)


@pytest.mark.parametrize(
    ("dataset", "source"),
    [("cats_vs_dogs", "auto"), ("imdb", "synthetic"), ("mnist", "bundled"), ("mnist", "remote")],
)
def test_missing_path_is_an_error_under_every_source(world, dataset, source):
    params = _params(
        dataset, source=source, path=str(world.tmp / "typo"), mirrors=[f"{dead_url()}/x.zip"]
    )
    t0 = time.perf_counter()
    world.refuses(
        lambda: run_download(params, dataset, world.root),
        FileNotFoundError,
        "does not exist",
        f"data.{dataset}.path: {world.tmp / 'typo'}",
    )
    assert time.perf_counter() - t0 < 2  # no retries


# a bomb by its header, cut short, not an image, empty
BAD_IMAGES = [_png_header(30000, 30000), _jpeg(3)[:200], b"<html>not a picture</html>", b""]


def test_unreadable_images_one_error_for_predict_skipped_and_counted_by_split(world, capsys):
    src = _folder(world.inputs / "photos", GOOD)
    for i, data in enumerate(BAD_IMAGES):
        path = _write(src / ("cats" if i % 2 else "dogs") / f"bad{i}.png", data)
        with pytest.raises(ImageReadError) as err:
            load_image(path, (16, 16))
        assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    # 10 files, 6 readable: asking for all 10 must come up short, and say so
    params = _params("cats_vs_dogs", path=str(src), split_sizes=[4, 3, 3])
    run_download(params, "cats_vs_dogs", world.root)
    split = run_split(params, "cats_vs_dogs", world.root)
    assert split["skipped_count"] == len(BAD_IMAGES)
    assert {s["file"] for s in split["skipped"]} == {
        f"{'cats' if i % 2 else 'dogs'}/bad{i}.png" for i in range(len(BAD_IMAGES))
    }
    assert any(
        "decompression bomb" in s["reason"].lower() or "pixels" in s["reason"]
        for s in split["skipped"]
    )
    short = split["shortfall"]
    for s, n in split["counts"].items():
        assert n == (short[s]["got"] if s in short else n)
    assert sum(v["requested"] - v["got"] for v in short.values()) == len(BAD_IMAGES)
    assert "too few readable images" in capsys.readouterr().err


SYNTHETIC_IMDB = {"source": "synthetic", "synthetic_size": 40, "val_fraction": 0.05}


@pytest.mark.parametrize(
    ("dataset", "block"),
    [("mnist", {"source": "bundled", "val_fraction": 0.04}), ("imdb", SYNTHETIC_IMDB)],
)
def test_empty_split_is_refused_naming_dataset_and_split(world, dataset, block):
    params = _params(dataset, max_samples=10, **block)
    run_download(params, dataset, world.root)
    world.refuses(
        lambda: run_split(params, dataset, world.root),
        ValueError,
        r"the val( and test)? split would be empty",
        f"split@{dataset}",
    )


def _server_dir(t: Path) -> Path:
    srv = t / "srv"
    srv.mkdir()
    _zip(srv / "good.zip", GOOD)
    _bad_crc_zip(t).rename(srv / "damaged.zip")
    _zip(srv / "evil.zip", [*GOOD, (_symlink_zipinfo("cats/s.jpg"), "/etc/passwd")])
    return srv


OK, CUT = b"HTTP/1.1 200 OK\r\n", r"connection closed early|IncompleteRead"
# id -> (a hostile server's reply (None: a trickle), or a file of _server_dir, error regex)
BAD_MIRRORS = {
    "net-garbage-not-http": (b"\x00\x01SSH-2.0-not-http\r\n\r\n", r"BadStatusLine|RemoteDisc"),
    "net-content-length-cut-short": (OK + b"Content-Length: 5000\r\n\r\n" + b"x" * 100, CUT),
    "net-http-500": (b"HTTP/1.1 500 Boom\r\nContent-Length: 0\r\n\r\n", r"HTTP 500"),
    "net-trickle-total-timeout": (None, r"total_timeout=1s"),
    "net-damaged-archive": ("damaged.zip", r"damaged archive"),
    "net-unsafe-archive": ("evil.zip", r"refused"),
    "net-pinned-checksum-mismatch": (
        f"good.zip#sha256={'0' * 64}",
        r"archive: checksum mismatch from .*good.zip: expected sha256:0{64}, got sha256:\w{64}",
    ),
}


@pytest.mark.parametrize("name", list(BAD_MIRRORS), ids=list(BAD_MIRRORS))
def test_bad_mirror_fails_then_the_next_is_tried_then_auto_falls_back(world, name):
    reply, pattern = BAD_MIRRORS[name]
    hostile = contextlib.nullcontext() if isinstance(reply, str) else raw_server(reply)
    with hostile as raw, serve(_server_dir(world.tmp)) as good:
        bad = f"{good}/{reply}" if isinstance(reply, str) else f"{raw}/photos.zip"
        block = {"total_timeout": 1, "timeout": 3}
        # remote: one line naming the URL; earlier output kept
        params = _params("cats_vs_dogs", mirrors=[bad], **block)
        t0 = time.perf_counter()
        call = lambda: run_download(params, "cats_vs_dogs", world.root)  # noqa: E731
        world.refuses(call, DownloadError, pattern, bad.partition("#")[0])
        assert time.perf_counter() - t0 < 8
        # the next mirror is tried
        params = _params("cats_vs_dogs", mirrors=[bad, f"{good}/good.zip"], **block)
        got = run_download(params, "cats_vs_dogs", world.root)["files"]["archive"]
        assert got["url"] == f"{good}/good.zip"
        # auto: falls back loudly, the reason names the URL
        auto = {"source": "auto", "synthetic_size": 10, "synthetic_image_size": 8, **block}
        manifest = run_download(
            _params("cats_vs_dogs", mirrors=[bad], **auto), "cats_vs_dogs", world.root
        )
    assert manifest["source"].startswith("synthetic")
    assert bad.partition("#")[0] in manifest["fallback_reason"]
    world.assert_untouched("cats_vs_dogs")


_KILLED = """
import sys
from pathlib import Path
from nnlab.stages.download import run as run_download
from tests.conftest import tiny_params
block = {"kind": "image_folder", "source": "remote", "mirrors": [sys.argv[1]], "retries": 0}
run_download(tiny_params(**{"data.cats_vs_dogs": block}), "cats_vs_dogs", Path(sys.argv[2]))
"""


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT], ids=["signal-sigterm", "signal-ctrl-c"]
)
def test_download_stage_killed_mid_transfer_leaves_no_temp_files_and_the_old_output(world, sig):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    world.freeze()
    with raw_server() as url:  # a trickle
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED, f"{url}/photos.zip", str(world.root)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not list(world.root.glob("data/raw/.cats_vs_dogs.tmp-*/.*.part")):
                assert time.monotonic() < deadline, "the download never started"
                time.sleep(0.05)
            time.sleep(0.2)
            proc.send_signal(sig)
            code = proc.wait(10)
        finally:
            proc.kill()
            proc.wait()
    # SIGTERM: SystemExit(143) through every finally; Ctrl-C: KeyboardInterrupt, likewise
    assert code == 143 if sig == signal.SIGTERM else code != 0
    world.assert_untouched()
