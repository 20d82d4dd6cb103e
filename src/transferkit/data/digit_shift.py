"""An offline digit domain shift: printed digits (rendered from fonts) → handwritten digits (scikit-learn's).

The published digit-adaptation benchmarks (MNIST → USPS, SVHN → MNIST, SynDigits → SVHN) need downloads that this
project cannot make. What ships with its own dependencies: scikit-learn's ``load_digits`` (UCI optdigits: 1,797
handwritten digits by 43 writers, 32×32 bitmaps reduced to 8×8 by counting the ink pixels of each 4×4 block, values
0-16), and matplotlib's fonts (DejaVu Sans/Serif/Mono, STIX, Computer Modern: 30+ typefaces and styles). So the source
domain is *printed* digits: each digit drawn in a random font at a random size, slant, rotation, stroke width and
position into a 32×32 bitmap, then reduced exactly as optdigits was (4×4 ink counts → 8×8, 0-16). Printed → handwritten
is the shift of SynDigits → SVHN (Ganin & Lempitsky, ICML 2015): the same classes and the same pipeline, different
writers of the shapes (a printed 1 has a foot and a flag, a handwritten 7 often a bar, 4s open or closed).

Both domains come as 8×8 uint8 images scaled 0-16 → 0-255 (the last value clipped), like ``bench/baselines.py``'s
digits. The printed set is deterministic for a seed.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._errors import DataError
from ._dataset import ImageDataset
from .sources import from_arrays

DIGITS = tuple(str(d) for d in range(10))
#: rendering canvas: optdigits' bitmaps are 32×32
CANVAS = 32


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """Every TrueType font matplotlib ships that draws the ten digits (symbol-only fonts left out)."""
    import matplotlib

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    keep = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ttf") or name.startswith(("STIXSiz", "STIXNonUni", "cmex", "cmsy", "cmmi", "LastResort")) or "Display" in name:
            continue
        keep.append(os.path.join(folder, name))
    if not keep:
        raise DataError(f"No fonts found in {folder}; reinstall matplotlib (pip install --force-reinstall matplotlib).")
    return tuple(keep)


def to_optdigits(bitmap: np.ndarray) -> np.ndarray:
    """A 32×32 boolean bitmap → 8×8 ink counts of its 4×4 blocks (0-16), as optdigits reduced its bitmaps."""
    return bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3))


def render_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One printed ``digit`` as a 32×32 boolean bitmap: random font, size, stroke, slant, rotation and position."""
    fonts = font_files()
    # drawn large (64 px) and scaled down: strokes and slants then come out as in a scanned print
    font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], size=64)
    side = 6 * CANVAS
    big = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(big)
    stroke = int(rng.integers(0, 4))  # up to ~5 % of the glyph's height: light to heavy print
    draw.text((2 * CANVAS, 2 * CANVAS), DIGITS[digit], fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    shear = float(rng.uniform(-0.3, 0.3))
    big = big.transform(big.size, Image.Transform.AFFINE, (1, shear, -shear * side / 2, 0, 1, 0),
                        resample=Image.Resampling.BILINEAR)
    big = big.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    box = big.getbbox()
    if box is None:  # nothing drawn: a font without the glyph
        return np.zeros((CANVAS, CANVAS), dtype=bool)
    glyph = big.crop(box)
    # optdigits centred each digit in its box and scaled it to fill it; keep the aspect ratio, jitter the fit
    scale = min(CANVAS / glyph.width, CANVAS / glyph.height) * float(rng.uniform(0.85, 1.0))
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.Resampling.BILINEAR)
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    left = (CANVAS - glyph.width) // 2 + int(rng.integers(-1, 2))
    top = (CANVAS - glyph.height) // 2 + int(rng.integers(-1, 2))
    canvas.paste(glyph, (left, top))
    return np.asarray(canvas) > 127


def load_printed_digits(n_per_class: int = 200, *, seed: int = 0) -> ImageDataset:
    """Printed digits 0-9, ``n_per_class`` each, as 8×8 uint8 images (optdigits' reduction, 0-16 → 0-255).

    Example:
        >>> source, target = load_printed_digits(300), load_handwritten_digits()
    """
    if n_per_class < 1:
        raise DataError(f"n_per_class must be >= 1. Got {n_per_class!r} instead.")
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for digit in range(10):
        for _ in range(n_per_class):
            images.append(_scaled(to_optdigits(render_digit(digit, rng))))
            labels.append(digit)
    return from_arrays(np.stack(images), np.array(labels), list(DIGITS), name=f"printed-digits x{n_per_class}")


def load_handwritten_digits() -> ImageDataset:
    """scikit-learn's handwritten digits (UCI optdigits test set, 1,797 images) as 8×8 uint8 images, 0-16 → 0-255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return from_arrays(_scaled(d.images), d.target.astype(np.int64), list(DIGITS), name="handwritten-digits")


def _scaled(counts: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(counts) * 16, 0, 255).astype(np.uint8)


#: the one split of the handwritten digits into an unlabelled adaptation part (2/3) and a labelled test part (1/3)
SPLIT_SEED = 12345


def load_digit_shift(name: str) -> ImageDataset:
    """A built-in name: ``printed-digits`` (200 per class, seed 0), ``handwritten-digits`` (all 1,797), or its
    ``:adapt`` (2/3) / ``:test`` (1/3) parts (stratified, seed :data:`SPLIT_SEED`, the split of bench/adaptation.py).
    """
    from .split import stratified_split

    if name == "printed-digits":
        return load_printed_digits(200, seed=0)
    hand = load_handwritten_digits()
    if name == "handwritten-digits":
        return hand
    adapt, test = stratified_split(hand, 1 / 3, seed=SPLIT_SEED)
    part = {"handwritten-digits:adapt": adapt, "handwritten-digits:test": test}.get(name)
    if part is None:
        raise DataError(f"Unknown digit-shift name {name!r}; use printed-digits, handwritten-digits, "
                        f"handwritten-digits:adapt or handwritten-digits:test.")
    part.name = name
    return part
