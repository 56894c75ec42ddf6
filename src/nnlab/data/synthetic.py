"""Seeded offline substitutes: cartoon cats and dogs, reviews only word order labels (for RNNs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

ANIMAL_CLASSES = ("cats", "dogs")
REVIEW_CLASSES = ("neg", "pos")


def draw_animal(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A cat (0) or dog (1) on clutter, random place, size, angle, colour: the shape decides."""
    from PIL import Image, ImageDraw, ImageFilter

    s = 2 * size  # draw at twice the size, then downsample (anti-aliasing)
    base = rng.integers(40, 216, 3)
    grad = np.linspace(-1, 1, s)[:, None, None] * rng.integers(-40, 40, 3)
    bg = np.clip(base + grad + rng.normal(0, 12, (s, s, 3)), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(bg)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 5))):  # clutter: boxes and blobs
        x0, y0 = rng.integers(0, s, 2)
        w, h = rng.integers(s // 10, s // 3, 2)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))

    r = s * rng.uniform(0.17, 0.27)
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)

    def at(x: float, y: float) -> tuple[float, float]:  # in head radii from the centre
        return s / 2 + x * r, s / 2 + y * r

    def oval(x0: float, y0: float, x1: float, y1: float, fill: tuple) -> None:
        d.ellipse([*at(x0, y0), *at(x1, y1)], fill=fill)

    fur = (*(int(v) for v in rng.integers(30, 230, 3)), 255)
    dark = (20, 20, 20, 255)
    for side in (-1, 1):
        if label == 0:  # cat: two pointed ears on top
            a, b = np.deg2rad(90 - side * 20), np.deg2rad(90 - side * 70)
            ear = [at(np.cos(a), -np.sin(a)), at(side * 0.75, -1.6), at(np.cos(b), -np.sin(b))]
            d.polygon(ear, fill=fur)
        else:  # dog: two long floppy ears hanging at the sides
            oval(side * 0.95 - 0.35, -0.6, side * 0.95 + 0.35, 0.95, fur)
    oval(-1, -1, 1, 1, fur)
    if label == 0:  # small nose
        d.polygon([at(-0.1, 0.2), at(0.1, 0.2), at(0, 0.32)], fill=dark)
    else:  # snout with a big nose
        oval(-0.4, 0.15, 0.4, 0.75, (*(min(255, v + 40) for v in fur[:3]), 255))
        oval(-0.16, 0.2, 0.16, 0.42, dark)
    for side in (-1, 1):  # eyes, a cat's whiskers
        oval(side * 0.4 - 0.12, -0.27, side * 0.4 + 0.12, -0.03, dark)
        for dy in (-0.08, 0.08) if label == 0 else ():
            d.line([at(side * 0.2, 0.35), at(side * 1.25, 0.35 + 3 * dy)], fill=dark)
    layer = layer.rotate(rng.uniform(-45, 45), resample=Image.Resampling.BICUBIC)
    dx, dy = (rng.uniform(-0.5, 0.5, 2) * (s - 2.2 * r)).astype(int)
    canvas.paste(layer, (int(dx), int(dy)), layer)
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
    return np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


# ----------------------------------------------------------------------------- reviews

_POSITIVE = [
    *("good", "great", "excellent", "wonderful", "brilliant"),
    *("enjoyable", "funny", "moving", "clever", "beautiful"),
]
_NEGATIVE = [
    *("bad", "awful", "terrible", "boring", "dull"),
    *("poor", "weak", "predictable", "silly", "clumsy"),
]
_ASPECTS = [
    *("the acting", "the plot", "the story", "the script", "the music", "the ending"),
    *("the cast", "the direction", "the dialogue", "this movie", "the film", "the camera work"),
]
_FILLER = [
    *("i saw it on a rainy sunday", "my friend did not want to come", "it is not a short film"),
    *("the cinema was not full", "we watched it at home", "it was made in 1998"),
    *("it runs for about two hours", "i had not read the book", "there is a dog in it"),
    *("the lead actor is not new to the genre", "my sister picked it", "the popcorn was cold"),
    *("it is based on a true story", "nobody in the room said a word"),
    *("i did not know the director", "the second half takes place in paris"),
    "the trailer shows most of it",
]


def synthetic_review(rng: np.random.Generator, label: int) -> str:
    """A review "<aspect> was [not] <adj> [at all]" among fillers with "not": order decides."""
    sentences = [str(s) for s in rng.choice(_FILLER, size=rng.integers(2, 7), replace=False)]
    for _ in range(rng.integers(1, 3)):
        negated = bool(rng.integers(2))
        words = _POSITIVE if label != negated else _NEGATIVE  # negation flips the polarity
        phrase = f"{rng.choice(_ASPECTS)} was {'not ' if negated else ''}{rng.choice(words)}"
        if negated and rng.random() < 0.5:
            phrase += " at all"
        sentences.insert(int(rng.integers(len(sentences) + 1)), phrase)
    text = ". ".join(sentences).capitalize() + "."
    return text.replace(". ", ". <br /><br />", 1) if rng.random() < 0.3 else text


def synthetic_reviews(n: int, n_test: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` records (split, label, id, text), neg and pos in turn; the first ``n_test``: test."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        split, text = "test" if i < n_test else "train", synthetic_review(rng, i % 2)
        yield {"split": split, "label": REVIEW_CLASSES[i % 2], "id": f"syn{i:06d}", "text": text}
