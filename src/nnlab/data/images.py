"""Image decoding shared by the image readers and by ``nnlab predict``."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_ASPECT = 20  # a longer side more than this many times the shorter is no photo to squash


class ImageReadError(ValueError):
    """One file that cannot be used as an image (named in the message)."""


def load_image(
    path: str | Path | bytes, size: tuple[int, int], channels: int = 3
) -> tuple[np.ndarray, str]:
    """(HWC uint8 of ``size``, the image's own mode), or ImageReadError; limits checked first."""
    data = bytes(path) if isinstance(path, bytes | bytearray) else None
    shown = f"<{len(data)} bytes>" if data is not None else Path(path)
    try:
        with Image.open(io.BytesIO(data) if data is not None else shown) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.width * im.height > limit:
                raise ValueError(
                    f"{im.width}x{im.height} pixels, over the {limit} limit (decompression bomb?)"
                )
            if max(im.size) > MAX_ASPECT * min(im.size):
                raise ValueError(
                    f"{im.width}x{im.height} pixels: one side over {MAX_ASPECT} "
                    f"times the other, too distorted to resize to {size[1]}x{size[0]}"
                )
            mode = im.mode
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I") or im.mode == "F":  # scaled to 8 bits: convert() clips
                arr = np.asarray(im, dtype=np.float64)
                top = arr.max(initial=0)
                if im.mode.startswith("I;16") or top > 255:
                    arr = arr * (255 / 65535 if top <= 65535 else 255 / top)
                elif im.mode == "F" and top <= 1:
                    arr = arr * 255
                im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
            if im.mode in ("RGBA", "LA", "P", "PA"):  # transparency onto white, not black
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im.resize((size[1], size[0]), Image.Resampling.BILINEAR), np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{shown}: no such file") from None
    except Exception as err:  # anything a hostile or damaged file makes the decoder raise
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the bytes", str(err))
        raise ImageReadError(f"{shown}: not a readable image ({reason})") from None
    return (arr[..., None] if arr.ndim == 2 else arr), mode
