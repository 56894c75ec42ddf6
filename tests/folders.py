"""A user's own data for the data tests: folders of shape images, sentences, tables."""

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from nnlab.stages.download import run as run_download
from nnlab.stages.split import run as run_split

CLASSES = ["circle", "square", "triangle"]
COLOURS = {"circle": (220, 40, 40), "square": (40, 200, 40), "triangle": (40, 40, 220)}
COLOURS |= {"cats": (200, 60, 40), "dogs": (40, 80, 200)}  # the lecture's two, as circles
MODES = ["RGB", "L", "RGB", "P", "RGBA", "I;16", "RGB", "L"]
WORDS = {
    "circle": "round ball wheel orbit",
    "square": "box grid tile block",
    "triangle": "pyramid wedge arrow delta",
}


def shape_image(cls: str, i: int, mode: str = "RGB", size: int = 20) -> Image.Image:
    """A shape of its class's colour on grey noise, in ``mode`` (16-bit as ``I;16``)."""
    rng = np.random.default_rng(i)
    arr = np.clip(rng.normal(128, 20, (size, size + i % 3, 3)), 0, 255)
    yy, xx = np.mgrid[: arr.shape[0], : arr.shape[1]]
    c = size / 2
    mask = {
        "square": (abs(yy - c) < size / 3) & (abs(xx - c) < size / 3),
        "triangle": (yy > size / 5) & (abs(xx - c) < (yy - size / 5) / 2),
    }.get(cls, (yy - c) ** 2 + (xx - c) ** 2 < (size / 3) ** 2)
    arr[mask] = COLOURS[cls]
    rgb = Image.fromarray(arr.astype(np.uint8))
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    return rgb.convert(mode)


def image_folder(root: Path, n: int = 8, split: str = "", classes=CLASSES) -> Path:
    """``n`` images per class (modes mixed: grey, 16-bit, palette, RGBA) under root/[split/]."""
    for cls in classes:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape_image(cls, i, MODES[i % len(MODES)]).save(root / split / cls / f"{i}.png")
    return root


def sentence(cls: str, i: int) -> str:
    words = WORDS[cls].split()
    return f"the {words[i % 4]} and the {words[(i + 1) % 4]} number {i}"


def text_folder(root: Path, n: int = 10) -> Path:
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / cls / f"{i}.txt").write_text(sentence(cls, i))
    return root


def table(folder: Path, fmt: str = "csv", rows=None, text="text", label="label") -> Path:
    """A table of (text, label) ``rows`` (ten sentences per class unless given)."""
    if rows is None:
        rows = [(sentence(cls, i), cls) for i in range(10) for cls in CLASSES]
    path = folder / f"reviews.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({text: t, label: c}) + "\n" for t, c in rows))
        return path
    with open(path, "w", newline="") as fh:
        lines = [(label, text), *((c, t) for t, c in rows)]  # the label column first
        csv.writer(fh, delimiter="," if fmt == "csv" else "\t").writerows(lines)
    return path


def prepare(params, name: str, root: Path) -> dict:
    """download@<name>, then split@<name>: the split's result."""
    run_download(params, name, root)
    return run_split(params, name, root)
