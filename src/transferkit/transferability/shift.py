"""Source–target domain shift measured with the source model's own BatchNorm statistics.

A BatchNorm layer's running mean and variance are the per-channel statistics of the *source* data at that depth
(Ioffe & Szegedy, "Batch Normalization", ICML 2015). Comparing them with the same statistics of the target images
measures how far the target lies from the source domain, layer by layer, without any source data — the observation
behind AdaBN (Li, Wang, Shi, Hou, Liu, "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR 2017
workshop / Pattern Recognition 2018).

Per channel we take the symmetric KL divergence (Jeffreys divergence / 2) between the Gaussians
N(mean_target, var_target) and N(running_mean, running_var); per layer the median over channels (dead channels with
near-zero variance would otherwise dominate); the shift of a depth range is the mean over its layers. 0 means the
target looks like the source at that depth; larger is further. Backbones without BatchNorm, and randomly
initialised ones (their running statistics describe no data), have no shift: ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import move_to, resolve_device
from ..backbones import Backbone
from ..data import ImageDataset
from ..data.loader import backbone_batches


def gaussian_jeffreys(mean_a: np.ndarray, var_a: np.ndarray, mean_b: np.ndarray, var_b: np.ndarray) -> np.ndarray:
    """Symmetric KL ``(KL(a||b) + KL(b||a)) / 2`` between 1-D Gaussians, elementwise."""
    d2 = (mean_a - mean_b) ** 2
    return 0.25 * (var_a / var_b + var_b / var_a + d2 * (1.0 / var_a + 1.0 / var_b)) - 0.5


def batchnorm_shift(backbone: Backbone, dataset: ImageDataset, *, sample: int = 256, batch_size: int = 32,
                    device: str = "auto", seed: int = 0) -> dict[str, Any] | None:
    """Per-layer and overall shift of ``dataset`` from the backbone's source data (see the module docstring).

    Args:
        backbone: a pretrained backbone with BatchNorm layers.
        dataset: target images (labels not needed).
        sample: at most this many images, drawn with ``seed``.
        batch_size, device: how to run the forward passes.

    Returns:
        ``{"overall", "early", "middle", "late", "layers": {name: shift}, "images"}`` or None when the backbone has no
        BatchNorm layers or is not pretrained.
    """
    if not backbone.weights.pretrained:
        return None
    norms = [(name, m) for name, m in backbone.trunk.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
             and m.running_mean is not None]
    if not norms:
        return None
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.permutation(len(dataset))[:sample])
    dev = resolve_device(device)
    sums: dict[str, list[torch.Tensor]] = {}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            x = inputs[0].detach().float()
            dims = [d for d in range(x.ndim) if d != 1]
            count = x.numel() / x.shape[1]
            s = [x.sum(dims).double().cpu(), (x * x).sum(dims).double().cpu(), torch.tensor(count).double()]
            if name in sums:
                sums[name] = [a + b for a, b in zip(sums[name], s, strict=True)]
            else:
                sums[name] = s
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in norms]
    was_training = backbone.training
    backbone.eval().to(dev)
    try:
        loader = backbone_batches(backbone, dataset, indices=indices, batch_size=batch_size)
        with torch.inference_mode():
            for batch in loader:
                if len(batch["index"]):
                    backbone.trunk(move_to(batch["inputs"], dev))
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    per_layer: dict[str, float] = {}
    for name, m in norms:
        if name not in sums:
            continue
        total, total_sq, count = (t.numpy() for t in sums[name])
        mean = total / count
        var = np.maximum(total_sq / count - mean**2, 0.0) + m.eps
        ref_mean = m.running_mean.detach().double().cpu().numpy()  # type: ignore[union-attr]
        ref_var = m.running_var.detach().double().cpu().numpy() + m.eps  # type: ignore[union-attr]
        per_layer[name] = float(np.median(gaussian_jeffreys(mean, var, ref_mean, ref_var)))
    values = list(per_layer.values())
    if not values:
        return None
    thirds = np.array_split(np.asarray(values), 3)  # fewer than 3 BatchNorm layers: an empty third is None
    early, middle, late = (float(third.mean()) if len(third) else None for third in thirds)
    return {"overall": float(np.mean(values)), "early": early, "middle": middle, "late": late, "layers": per_layer,
            "images": int(len(indices))}
