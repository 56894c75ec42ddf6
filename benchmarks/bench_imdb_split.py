"""IMDB data stages on the 50,000 reviews of aclImdb.

1. download@imdb's conversion: reading the tar members directly into ``reviews.jsonl.gz``
   (what the stage does) versus the baseline, extracting the archive (``unpack_tree``) and
   reading the 50,000 files back.
2. split@imdb: tokenize, build the 10,000-word vocabulary from the training split, encode to
   int32 arrays of max_len 200 (``text.split``), with its phases timed separately.

Uses ../shared/datasets/aclImdb.tar.gz when present, else a generated archive of
``--reviews`` synthetic reviews of IMDB-like length (the ratios then say less about real
files). Runs alternate baseline/ours ``--repeat`` times; medians and the ratio
baseline/ours are printed.

    flock /tmp/nnlab-heavy.lock nice -n 5 python benchmarks/bench_imdb_split.py
    (quick set: benchmarks/run_quick.sh; without the archive: --archive none --reviews 2000)
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from common import SHARED, alternate, result
from nnlab.config import TextFolderConfig
from nnlab.data import text
from nnlab.data.sources import Limits, unpack_tree
from nnlab.data.synthetic import synthetic_review
from nnlab.data.text import Vocabulary, stored_texts, tokenize, write_texts
from nnlab.files import write_json
from nnlab.paths import RAW_TEXTS

SHARED_ARCHIVE = SHARED / "aclImdb.tar.gz"


def generated_archive(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for i in range(n):
            label = i % 2
            text = " ".join(synthetic_review(rng, label) for _ in range(6)).encode()
            info = tarfile.TarInfo(
                f"aclImdb/{'train' if i < n // 2 else 'test'}/{'pos' if label else 'neg'}/{i}_5.txt"
            )
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text))
    return path


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--archive", type=Path, default=SHARED_ARCHIVE)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reviews", type=int, default=50_000, help="of a generated archive")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-imdb-") as tmp:
        tmp = Path(tmp)
        archive = args.archive
        if not archive.is_file():
            print(f"{archive} not found: generating {args.reviews:,} synthetic reviews instead")
            archive = generated_archive(tmp / "generated.tar.gz", args.reviews)
        print(f"archive: {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
        cfg = TextFolderConfig(
            kind="text_folder",
            source="synthetic",
            vocab_size=10000,
            max_len=200,
            classes={"neg": "negative", "pos": "positive"},
        )

        def extract_then_read() -> None:
            unpack_tree(archive, tmp / "extracted", str(archive), Limits())
            write_texts(text.read_texts(cfg, tmp / "extracted", "bench")[0], tmp / "a.jsonl.gz")
            shutil.rmtree(tmp / "extracted")

        def stream() -> None:
            write_texts(text.read_texts(cfg, archive, "bench")[0], tmp / "raw" / RAW_TEXTS)

        (tmp / "raw").mkdir()
        write_json(tmp / "raw" / "manifest.json", {"source": str(archive)})  # not synthetic
        got = alternate(
            {"base": lambda: timed(extract_then_read), "ours": lambda: timed(stream)}, args.repeat
        )
        b, o = got["base"], got["ours"]
        print(f"\n1. download@imdb conversion (median of {args.repeat})")
        print(f"   extract all files, read them back   {b:6.2f} s   (baseline)")
        print(f"   read tar members directly (ours)     {o:6.2f} s")
        result("download@imdb: extract + read files / read tar members (s)", b / o)

        total = alternate(
            {"split": lambda: timed(lambda: text.split(cfg, tmp / "raw", 42, "imdb"))},
            args.repeat,
        )["split"]
        t_read = timed(lambda: list(stored_texts(tmp / "raw" / RAW_TEXTS)))
        records = list(stored_texts(tmp / "raw" / RAW_TEXTS))
        train = [r["text"] for r in records if r["split"] == "train"]
        texts = train + [r["text"] for r in records if r["split"] == "test"]
        tokens: list[list[str]] = []
        t_tok = timed(lambda: tokens.extend(tokenize(t) for t in texts))
        vocab_box: list[Vocabulary] = []
        t_vocab = timed(
            lambda: vocab_box.append(Vocabulary.build(tokens[: len(train)], 10000, 200))
        )
        t_enc = timed(lambda: vocab_box[0].encode(tokens))
        n_words = sum(map(len, tokens))
        print(
            f"\n2. split@imdb on {len(texts):,} reviews ({n_words / 1e6:.1f} M words), "
            f"vocab 10,000, max_len 200"
        )
        print(f"   text.split total (median of {args.repeat})  {total:6.2f} s")
        print(f"     read texts.jsonl.gz        {t_read:6.2f} s")
        rate = n_words / t_tok / 1e6
        print(f"     tokenize                   {t_tok:6.2f} s  ({rate:.1f} M words/s)")
        print(f"     vocabulary (train only)    {t_vocab:6.2f} s")
        print(f"     encode to int32 arrays     {t_enc:6.2f} s")
        result(f"split@imdb on {len(texts):,} reviews (s)", total, "s")
        result("split@imdb tokenizer (M words/s)", rate, "M/s")


if __name__ == "__main__":
    main()
