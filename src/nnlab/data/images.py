"""Image decoding shared by the image datasets and by ``nnlab predict``."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class ImageReadError(ValueError):
    """One file that cannot be used as an image (named in the message)."""


# What decoding a hostile or damaged file can raise. A decompression bomb's header
# (PIL.Image.DecompressionBombError, not an OSError) is refused like any unreadable file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                  ZeroDivisionError, struct.error, MemoryError, Image.DecompressionBombError,
                  Image.DecompressionBombWarning)


def load_image(path: str | Path | bytes, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Decode, convert (grayscale, CMYK, palette, RGBA...) and resize to HWC uint8.

    ``path`` is a file, or the encoded image itself (``bytes``: PNG, JPEG... as served).
    Raises :class:`ImageReadError` naming the file (or ``<N bytes>``) when it is missing,
    truncated, not an image, or claims more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``
    (checked on the header, before anything is decoded).
    """
    data = bytes(path) if isinstance(path, bytes | bytearray) else None
    path = f"<{len(data)} bytes>" if data is not None else Path(path)
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.width * im.height > limit:
                raise Image.DecompressionBombError(
                    f"{im.width}x{im.height} pixels, over the {limit} limit (decompression bomb?)")
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P", "PA"):
                # composite transparency onto white instead of dropping it to black
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            im = im.convert("L" if channels == 1 else "RGB")
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except _DECODE_ERRORS as err:
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the bytes", str(err))
        raise ImageReadError(f"{path}: not a readable image ({reason})") from None
    return arr[..., None] if arr.ndim == 2 else arr
