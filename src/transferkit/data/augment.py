"""Augmentation presets that always end in the backbone's own preprocessing (size, mean/std, interpolation).

| preset | per image | per batch |
|---|---|---|
| ``none`` | resize + centre crop (as at inference) | — |
| ``light`` | random resized crop (70–100 %) + horizontal flip | — |
| ``medium`` | random resized crop (40–100 %) + flip + colour jitter | — |
| ``strong`` | random resized crop (25–100 %) + flip + RandAugment (Cubuk et al., 2020) + random erasing | MixUp (Zhang et al., 2018) or CutMix (Yun et al., 2019) |

Per-image transforms come from torchvision's v2 transforms; MixUp/CutMix from ``torchvision.transforms.v2``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PIL import Image

from .._errors import TransferkitError
from ..backbones.weights import Preprocessing
from ._images import to_mode
from .transforms import build_transform, interpolation_mode

if TYPE_CHECKING:  # torch and torchvision are imported when a transform is built (see .transforms)
    import torch

PRESETS = ("none", "light", "medium", "strong")


def train_transform(pre: Preprocessing, preset: str) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image (any mode) → augmented, normalised ``(C, H, W)`` tensor."""
    if preset not in PRESETS:
        raise TransferkitError(f"augment must be one of {', '.join(PRESETS)}. Got {preset!r} instead.")
    if preset == "none":
        return build_transform(pre)
    import torch
    from torchvision.transforms import v2 as T

    size = pre.image_size
    interpolation = interpolation_mode(pre.interpolation)
    scale = {"light": (0.7, 1.0), "medium": (0.4, 1.0), "strong": (0.25, 1.0)}[preset]
    ops: list[torch.nn.Module] = [
        T.RandomResizedCrop(size, scale=scale, interpolation=interpolation, antialias=True),
        T.RandomHorizontalFlip(),
    ]
    if preset == "medium":
        ops.append(T.ColorJitter(0.3, 0.3, 0.3 if pre.channels == 3 else 0.0))
    if preset == "strong":
        ops.append(T.RandAugment(num_ops=2, magnitude=9, interpolation=interpolation))
    tail: list[torch.nn.Module] = [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(list(pre.mean), list(pre.std))]
    if preset == "strong":
        tail.append(T.RandomErasing(p=0.25))
    pipeline = T.Compose([*ops, *tail])
    channels = pre.channels

    def transform(img: Image.Image) -> torch.Tensor:
        return pipeline(to_mode(img, channels))

    return transform


def batch_mix(preset: str, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    """MixUp or CutMix (one chosen per batch) for ``strong``; returns soft targets ``(B, num_classes)``."""
    if preset != "strong":
        return None
    from torchvision.transforms import v2 as T

    mix = T.RandomChoice([T.MixUp(alpha=0.2, num_classes=num_classes), T.CutMix(alpha=1.0, num_classes=num_classes)])

    def apply(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mix(x, y)

    return apply
