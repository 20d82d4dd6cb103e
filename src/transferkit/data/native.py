"""Images decoded once into memory at their own (capped) resolution: what the small-CNN baselines train on.

The median size of the images (headers only, a sample of them), every image decoded to one uint8 tensor at that
size, one channel when every image is grey, and the per-channel statistics of the set.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .._progress import progress_bar
from ._dataset import ImageDataset
from ._images import to_mode
from .loader import image_loader

#: images whose header is read to choose the input size (files only; arrays carry it in their shape)
SIZE_SAMPLE = 256
#: a pixel whose colour channels differ by at most this much (of 255) counts as grey (JPEG rounding)
GREY_TOLERANCE = 2


def native_size(ds: ImageDataset, max_size: int, seed: int = 0) -> tuple[int, int]:
    """``(height, width)``: the images' median size (arrays: their shape), scaled so the longest side <= max_size.

    Only headers are read, of at most :data:`SIZE_SAMPLE` files; unreadable ones are left to the decoding pass.
    """
    if isinstance(ds.items, np.ndarray):
        height, width = ds.items.shape[1:3]
    else:
        rng = np.random.default_rng(seed)
        sample = rng.permutation(len(ds))[:SIZE_SAMPLE]
        sizes = []
        for i in sample:
            try:
                with Image.open(ds.items[int(i)]) as img:
                    w, h = img.size
                    if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation: rotated a quarter turn
                        w, h = h, w
                    sizes.append((h, w))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                continue
        if not sizes:
            return max_size, max_size
        height, width = (int(v) for v in np.median(np.array(sizes), axis=0))
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def decode(ds: ImageDataset, size: tuple[int, int], channels: int, num_workers: int = 0,
           progress: bool = False) -> tuple[torch.Tensor, np.ndarray, list[tuple[str, str]]]:
    """Every usable image as ``(N, channels, H, W)`` uint8 at ``size``: ``(images, index, skipped)``.

    ``channels=3`` keeps colour; :func:`grey_if_grey` then decides whether one channel is enough.
    """
    height, width = size

    def to_tensor(img: Image.Image) -> torch.Tensor:
        img = to_mode(img, channels)
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        a = np.array(img, dtype=np.uint8)  # a copy: torch wants writable memory
        return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())

    batches: list[torch.Tensor] = []
    index: list[int] = []
    skipped: list[tuple[str, str]] = []
    with progress_bar(len(ds), "decode", progress) as advance:
        for batch in image_loader(ds, to_tensor, batch_size=256, num_workers=num_workers):
            skipped.extend((ds.describe(i), reason) for i, reason in batch["bad"])
            if len(batch["index"]):
                batches.append(batch["inputs"])
                index.extend(batch["index"].tolist())
            advance(len(batch["index"]) + len(batch["bad"]))
    images = torch.cat(batches) if batches else torch.zeros((0, channels, height, width), dtype=torch.uint8)
    return images, np.array(index, dtype=np.int64), skipped


def grey_if_grey(images: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` when every image is grey (R = G = B within :data:`GREY_TOLERANCE`), else unchanged."""
    if images.shape[1] != 3 or not len(images):
        return images
    for chunk in images.split(4096):  # int16 copies of a few thousand images at a time, not of the whole set
        wide = chunk.to(torch.int16)
        if int(torch.maximum((wide[:, 0] - wide[:, 1]).abs(), (wide[:, 1] - wide[:, 2]).abs()).max()) > GREY_TOLERANCE:
            return images
    return images[:, 1:2].contiguous()  # green: the channel PIL's luma (L) weighs most


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images, in [0, 1] units (float64 sums, chunked)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64).div_(255.0)
        total += x.sum((0, 2, 3))
        squares += x.square().sum((0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.float(), std.float()
