"""A torch ``Dataset`` over ``ImageDataset`` that reports unusable inputs instead of crashing the loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ._dataset import BadImage, ImageDataset


class _Images(Dataset):
    def __init__(self, ds: ImageDataset, indices: np.ndarray, transform: Callable[[Image.Image], torch.Tensor]):
        self.ds, self.indices, self.transform = ds, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor | None, int, str]:
        i = int(self.indices[k])
        try:
            return self.transform(self.ds.load(i)), i, ""
        except BadImage as e:
            return None, i, e.reason


def _collate(batch: list[tuple[torch.Tensor | None, int, str]]) -> dict[str, Any]:
    good = [(x, i) for x, i, _ in batch if x is not None]
    bad = [(i, reason) for x, i, reason in batch if x is None]
    images = torch.stack([x for x, _ in good]) if good else torch.empty(0)
    # "inputs" is what every backbone's forward takes (text loaders yield a dict there); "images" stays as an alias
    return {"images": images, "inputs": images, "index": torch.tensor([i for _, i in good], dtype=torch.long),
            "bad": bad}


def image_loader(
    ds: ImageDataset,
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    indices: np.ndarray | None = None,
    batch_size: int = 64,
    shuffle: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """Batches ``{"inputs": (B, C, H, W), "index": (B,), "bad": [(i, reason), ...]}`` in dataset order."""
    idx = np.arange(len(ds)) if indices is None else np.asarray(indices)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        _Images(ds, idx, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=_collate,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
    )
