"""Inference preprocessing from the weights' spec: what every backbone sees outside training."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2 as T

from ..backbones.weights import Preprocessing
from ._images import to_mode

_INTERPOLATION = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}


def build_transform(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image of any mode → normalised ``(C, H, W)`` float tensor as the weights expect (resize + centre crop).

    Training augmentation presets build on the same spec: :func:`transferkit.data.augment.train_transform`.
    """
    height, width = pre.image_size
    interpolation = _INTERPOLATION.get(pre.interpolation, T.InterpolationMode.BILINEAR)
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
