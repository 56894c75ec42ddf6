"""The seeded offline substitutes: cartoon cats and dogs, and movie reviews whose label is
carried by word order (a bag of words cannot solve them, a recurrent net can)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ANIMAL_CLASSES = ("cats", "dogs")


def write_animals(folder: Path, n: int, size: int, seed: int) -> None:
    """``n`` drawings, alternately cat and dog, as ``folder/<class>/<cat|dog>.<i>.png``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % 2
        cls_dir = folder / ANIMAL_CLASSES[label]
        cls_dir.mkdir(parents=True, exist_ok=True)
        img = draw_animal(rng, label, size)
        Image.fromarray(img).save(cls_dir / f"{ANIMAL_CLASSES[label][:-1]}.{i}.png")


def draw_animal(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A cartoon cat (0: pointed ears, whiskers) or dog (1: floppy ears, snout) on clutter.

    Head position, size and rotation, colours and background clutter are random, so a model
    must learn the shape rather than a place or a colour, and augmentation has work to do.
    """
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
    cx, cy = s / 2, s / 2
    fur = (*(int(v) for v in rng.integers(30, 230, 3)), 255)
    dark = (20, 20, 20, 255)
    if label == 0:  # cat: two pointed ears on top
        for side in (-1, 1):
            a, b = np.deg2rad(90 - side * 20), np.deg2rad(90 - side * 70)
            tip = (cx + side * 0.75 * r, cy - 1.6 * r)
            d.polygon(
                [
                    (cx + r * np.cos(a), cy - r * np.sin(a)),
                    tip,
                    (cx + r * np.cos(b), cy - r * np.sin(b)),
                ],
                fill=fur,
            )
    else:  # dog: two long floppy ears hanging at the sides
        for side in (-1, 1):
            ex = cx + side * 0.95 * r
            d.ellipse([ex - 0.35 * r, cy - 0.6 * r, ex + 0.35 * r, cy + 0.95 * r], fill=fur)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fur)
    for side in (-1, 1):  # eyes
        ex, ey = cx + side * 0.4 * r, cy - 0.15 * r
        d.ellipse([ex - 0.12 * r, ey - 0.12 * r, ex + 0.12 * r, ey + 0.12 * r], fill=dark)
    if label == 0:  # small nose, whiskers
        d.polygon(
            [(cx - 0.1 * r, cy + 0.2 * r), (cx + 0.1 * r, cy + 0.2 * r), (cx, cy + 0.32 * r)],
            fill=dark,
        )
        for side in (-1, 1):
            for dy in (-0.08, 0.08):
                d.line(
                    [
                        (cx + side * 0.2 * r, cy + 0.35 * r),
                        (cx + side * 1.25 * r, cy + (0.35 + 3 * dy) * r),
                    ],
                    fill=dark,
                    width=1,
                )
    else:  # snout with a big nose
        d.ellipse(
            [cx - 0.4 * r, cy + 0.15 * r, cx + 0.4 * r, cy + 0.75 * r],
            fill=(*(min(255, v + 40) for v in fur[:3]), 255),
        )
        d.ellipse([cx - 0.16 * r, cy + 0.2 * r, cx + 0.16 * r, cy + 0.42 * r], fill=dark)
    layer = layer.rotate(rng.uniform(-45, 45), resample=Image.Resampling.BICUBIC)
    dx, dy = (rng.uniform(-0.5, 0.5, 2) * (s - 2.2 * r)).astype(int)
    canvas.paste(layer, (int(dx), int(dy)), layer)
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
    return np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


# ----------------------------------------------------------------------------- reviews

_POSITIVE = [
    "good",
    "great",
    "excellent",
    "wonderful",
    "brilliant",
    "enjoyable",
    "funny",
    "moving",
    "clever",
    "beautiful",
]
_NEGATIVE = [
    "bad",
    "awful",
    "terrible",
    "boring",
    "dull",
    "poor",
    "weak",
    "predictable",
    "silly",
    "clumsy",
]
_ASPECTS = [
    "the acting",
    "the plot",
    "the story",
    "the script",
    "the music",
    "the ending",
    "the cast",
    "the direction",
    "the dialogue",
    "this movie",
    "the film",
    "the camera work",
]
_FILLER = [
    "i saw it on a rainy sunday",
    "my friend did not want to come",
    "it is not a short film",
    "the cinema was not full",
    "we watched it at home",
    "it was made in 1998",
    "it runs for about two hours",
    "i had not read the book",
    "there is a dog in it",
    "the lead actor is not new to the genre",
    "my sister picked it",
    "the popcorn was cold",
    "it is based on a true story",
    "nobody in the room said a word",
    "i did not know the director",
    "the second half takes place in paris",
    "the trailer shows most of it",
]


def synthetic_review(rng: np.random.Generator, label: int) -> str:
    """One review whose label is carried by word order: "<aspect> was [not] <adj> [at all]".

    Each adjective and the word "not" are as frequent in positive as in negative reviews
    (negated half of the time, and "not" also occurs in neutral sentences): only the order
    "not" + adjective decides.
    """
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
    """``n`` review records (split, label, id, text), alternately negative and positive;
    the first ``n_test`` are the test split."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % 2
        yield {
            "split": "test" if i < n_test else "train",
            "label": label,
            "id": f"syn{i:06d}",
            "text": synthetic_review(rng, label),
        }
