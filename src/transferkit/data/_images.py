"""Reading one image safely and bringing any mode (grayscale, RGBA, palette, 16-bit, CMYK) to RGB or L."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's default guard (~89 Mpx warns, twice that raises). We refuse from the warning level on.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class BadImage(Exception):
    """One input could not be used; ``reason`` says why. Collected into the run summary, never fatal alone."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decode an image file fully, refusing empty, truncated, non-image and decompression-bomb files."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except OSError as e:
        raise BadImage(f"cannot read file ({e.strerror})") from None
    if size == 0:
        raise BadImage("zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as raw:
                raw.load()
                img: Image.Image = ImageOps.exif_transpose(raw) or raw
                return img.copy() if img.mode != "P" else img.convert("RGBA")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS  # the limit in force, which may have been changed
        raise BadImage(f"refused: more than {limit} pixels (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImage(f"corrupt or truncated image ({str(e).splitlines()[0][:80]})") from None


def array_to_image(array: np.ndarray) -> Image.Image:
    """An ``(H, W)``, ``(H, W, 1|3|4)`` array of uint8, uint16 or floats in [0, 1] as a PIL image."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise BadImage(f"array of shape {a.shape} is not an image; expected (H, W) or (H, W, 1|3|4)")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a // 257).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        scale = 255.0 if np.nanmax(a) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a) * scale, 0, 255).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise BadImage(f"array dtype {a.dtype} is not an image type")
    return Image.fromarray(a)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert to ``RGB`` (3 channels) or ``L`` (1); transparency is composited over white, 16-bit scaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        elif img.mode.startswith("I;16") or a.max(initial=0) > 255:  # a dark 16-bit image is still 16-bit
            a = a / 257.0
        img = Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)
