"""The image training loop shared by fine-tuning and the from-scratch baseline.

Issue-2 scope: stages of (trainable groups, learning rate, epochs) with AdamW and a per-stage cosine decay.
Gradual unfreezing, discriminative learning rates, early stopping and checkpoints build on ``Stage``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._progress import progress_bar
from .._utils import autocast
from ..backbones import Backbone
from ..data import ImageDataset, build_transform
from ..data.loader import image_loader


class TransferModel(nn.Module):
    """``backbone`` (features at ``layer``) followed by a new ``head``: images → logits."""

    def __init__(self, backbone: Backbone, head: nn.Module, layer: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x, self.layer))


@dataclass
class Stage:
    """One phase of training: which backbone groups learn, at which learning rates, for how long."""

    name: str
    epochs: int
    lr_head: float
    lr_backbone: float
    trainable_groups: list[str] | None  # None: all groups; []: backbone frozen


def scan_images(ds: ImageDataset, channels: int, num_workers: int = 0) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode every image once: ``(usable indices, [(input, reason), ...])``."""
    from ..data import to_mode

    if ds.is_array:
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
                   num_workers: int = 0, progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Logits of every usable image: ``(logits, index, skipped)``."""
    model.eval().to(device)
    loader = image_loader(ds, build_transform(model.backbone.preprocessing), batch_size=batch_size,
                          num_workers=num_workers, pin_memory=device.type == "cuda")
    outs, index, skipped = [], [], []
    with progress_bar(len(ds), "predict", progress) as advance:
        for batch in loader:
            skipped.extend((ds.describe(i), reason) for i, reason in batch["bad"])
            if len(batch["index"]):
                with autocast(device):
                    outs.append(model(batch["images"].to(device)).float().cpu().numpy())
                index.extend(batch["index"].tolist())
            advance(len(batch["index"]) + len(batch["bad"]))
    n_out = model.head(torch.zeros(1, model.backbone.layer_dim(model.layer), device=device)).shape[1]
    logits = np.concatenate(outs) if outs else np.zeros((0, n_out), dtype=np.float32)
    return logits, np.array(index, dtype=np.int64), skipped


def train_stages(
    model: TransferModel,
    train: ImageDataset,
    stages: list[Stage],
    *,
    device: torch.device,
    batch_size: int,
    weight_decay: float,
    augment: str,
    seed: int,
    num_workers: int = 0,
    validation: ImageDataset | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the stages in order; returns one history row per epoch (loss, train accuracy, optional val accuracy)."""
    backbone = model.backbone
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    transform = build_transform(backbone.preprocessing, augment=augment)
    assert train.labels is not None
    labels = torch.as_tensor(train.labels)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict[str, Any]] = []
    epoch_no = 0
    for stage in stages:
        if stage.epochs <= 0:
            continue
        backbone.unfreeze()
        if stage.trainable_groups is not None:
            all_groups = [g.name for g in backbone.layer_groups()]
            backbone.freeze([g for g in all_groups if g not in stage.trainable_groups])
        backbone_params = [p for p in backbone.trunk.parameters() if p.requires_grad]
        groups = [{"params": list(model.head.parameters()), "lr": stage.lr_head}]
        if backbone_params:
            groups.append({"params": backbone_params, "lr": stage.lr_backbone})
        optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
        steps = stage.epochs * max(1, (len(train) + batch_size - 1) // batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        for _ in range(stage.epochs):
            epoch_no += 1
            start = time.perf_counter()
            model.train()
            loader = image_loader(train, transform, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                  pin_memory=device.type == "cuda", seed=seed + epoch_no)
            total_loss, correct, seen = 0.0, 0, 0
            with progress_bar(len(train), f"{stage.name} epoch {epoch_no}", progress) as advance:
                for batch in loader:
                    if not len(batch["index"]):
                        continue
                    x = batch["images"].to(device, non_blocking=True)
                    y = labels[batch["index"]].to(device)
                    with autocast(device):
                        logits = model(x)
                    loss = loss_fn(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    total_loss += float(loss.detach()) * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
                    advance(len(y), loss=f"{total_loss / seen:.3f}")
            row: dict[str, Any] = {"epoch": epoch_no, "stage": stage.name, "loss": total_loss / max(seen, 1),
                                   "train_accuracy": correct / max(seen, 1),
                                   "seconds": round(time.perf_counter() - start, 3)}
            if validation is not None and len(validation):
                logits_v, idx_v, _ = predict_logits(model, validation, device, batch_size, num_workers)
                assert validation.labels is not None
                row["val_accuracy"] = float(np.mean(logits_v.argmax(1) == validation.labels[idx_v]))
            history.append(row)
    backbone.unfreeze()
    model.eval()
    return history
