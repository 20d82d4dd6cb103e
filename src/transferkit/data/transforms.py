"""Inference preprocessing from the weights' spec: what every backbone sees outside training."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..backbones.weights import Preprocessing
from ._images import to_mode

if TYPE_CHECKING:
    import torch

# torchvision (and through it torch._dynamo, ~2 s) is imported when a transform is built, not with the package: a
# run whose features are all cached never builds one.


def interpolation_mode(name: str) -> Any:
    """torchvision's ``InterpolationMode`` for a :class:`Preprocessing` interpolation name (bilinear when unknown)."""
    from torchvision.transforms import InterpolationMode

    return {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
            "nearest": InterpolationMode.NEAREST}.get(name, InterpolationMode.BILINEAR)


def build_transform(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image of any mode → normalised ``(C, H, W)`` float tensor as the weights expect (resize + centre crop).

    Training augmentation presets build on the same spec: :func:`transferkit.data.augment.train_transform`.
    """
    import torch
    from torchvision.transforms import v2 as T

    height, width = pre.image_size
    interpolation = interpolation_mode(pre.interpolation)
    # square targets keep the aspect ratio (short side); non-square ones resize both sides, as timm does
    resize: int | tuple[int, int] = (
        int(round(height / pre.crop_pct)) if height == width
        else (int(round(height / pre.crop_pct)), int(round(width / pre.crop_pct)))
    )
    pipeline = T.Compose([
        T.Resize(resize, interpolation=interpolation, antialias=True), T.CenterCrop((height, width)),
        T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(list(pre.mean), list(pre.std)),
    ])
    channels = pre.channels

    def transform(img: Image.Image) -> torch.Tensor:
        return pipeline(to_mode(img, channels))

    return transform
