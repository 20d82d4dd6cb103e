"""The model trained by fine-tuning and scratch strategies, and its batched inference.

The training loop itself is :class:`transferkit.training.Trainer`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._progress import progress_bar
from .._utils import autocast, move_to
from ..backbones import Backbone
from ..data import ImageDataset
from ..data.loader import backbone_batches, image_loader


class TransferModel(nn.Module):
    """``backbone`` (features at ``layer``) followed by a new ``head``: images → logits."""

    def __init__(self, backbone: Backbone, head: nn.Module, layer: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.layer = layer

    def forward(self, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.backbone(x, self.layer))


def scan_images(ds: ImageDataset, channels: int, num_workers: int = 0) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode every image once: ``(usable indices, [(input, reason), ...])``."""
    from ..data import to_mode

    if getattr(ds, "modality", "image") != "image" or ds.is_array:  # texts and arrays were checked on loading
        return np.arange(len(ds)), []
    loader = image_loader(ds, lambda img: (to_mode(img, channels), torch.zeros(1))[1], batch_size=64,
                          num_workers=num_workers)
    good: list[int] = []
    bad: list[tuple[str, str]] = []
    for batch in loader:
        good.extend(batch["index"].tolist())
        bad.extend((ds.describe(i), reason) for i, reason in batch["bad"])
    return np.array(sorted(good), dtype=np.int64), bad


@torch.inference_mode()
def predict_logits(model: TransferModel, ds: ImageDataset, device: torch.device, batch_size: int = 64,
                   num_workers: int = 0, progress: bool = False,
                   precision: str = "auto") -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Logits of every usable image: ``(logits, index, skipped)``, at the ``precision`` the model trained with."""
    model.eval().to(device)
    loader = backbone_batches(model.backbone, ds, batch_size=batch_size, num_workers=num_workers,
                              pin_memory=device.type == "cuda")
    outs: list[np.ndarray] = []
    index: list[int] = []
    skipped: list[tuple[str, str]] = []
    with progress_bar(len(ds), "predict", progress) as advance:
        for batch in loader:
            skipped.extend((ds.describe(i), reason) for i, reason in batch["bad"])
            if len(batch["index"]):
                with autocast(device, precision):
                    outs.append(model(move_to(batch["inputs"], device)).float().cpu().numpy())
                index.extend(batch["index"].tolist())
            advance(len(batch["index"]) + len(batch["bad"]))
    n_out = model.head(torch.zeros(1, model.backbone.layer_dim(model.layer), device=device)).shape[1]
    logits = np.concatenate(outs) if outs else np.zeros((0, n_out), dtype=np.float32)
    return logits, np.array(index, dtype=np.int64), skipped
