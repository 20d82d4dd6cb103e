"""Torch head modules, described by a small JSON config so a bundle can rebuild them without pickle."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / scale`` with fixed buffers (a fitted StandardScaler as a layer)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, num_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class CosineHead(nn.Module):
    """Logits ``cos(x, w_k) / temperature`` against fixed class embeddings ``weight`` ``(K, D)`` (zero-shot)."""

    weight: torch.Tensor

    def __init__(self, num_features: int, num_classes: int, temperature: float):
        super().__init__()
        self.register_buffer("weight", torch.zeros(num_classes, num_features))
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(x.float(), dim=-1)
        w = nn.functional.normalize(self.weight.float(), dim=-1)
        return x @ w.T / self.temperature


def build_head_module(config: dict[str, Any]) -> nn.Module:
    """Rebuild a head from its config.

    Config keys: ``type`` (``linear``, ``mlp``, ``cosine`` or ``multitask``), ``in_features``, ``out_features``,
    ``standardize`` (bool), for ``mlp`` ``hidden`` (list of widths) and ``dropout``, for ``cosine`` ``temperature``,
    for ``multitask`` ``heads`` (one config per task) and ``weighting`` (:mod:`.multitask`).
    """
    kind = config["type"]
    if kind == "multitask":
        from .multitask import build_multitask_head  # it builds its task heads through this function

        return build_multitask_head(config)
    d_in, d_out = int(config["in_features"]), int(config["out_features"])
    if kind == "cosine":
        return CosineHead(d_in, d_out, float(config["temperature"]))
    layers: list[nn.Module] = [Standardize(d_in)] if config.get("standardize") else []
    if kind == "linear":
        layers.append(nn.Linear(d_in, d_out))
    elif kind == "mlp":
        width = d_in
        for hidden in config.get("hidden", [512]):
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(float(config.get("dropout", 0.0)))]
            width = hidden
        layers.append(nn.Linear(width, d_out))
    else:
        raise ValueError(f"unknown head type {kind!r}")
    return nn.Sequential(*layers)


class ModuleHead:
    """A torch head used like a scikit-learn classifier on feature arrays (``predict_proba``)."""

    def __init__(self, module: nn.Module, config: dict[str, Any]):
        self.module = module.eval()
        self.config = config

    @torch.inference_mode()
    def predict_proba(self, features: Any) -> Any:
        x = torch.as_tensor(features, dtype=torch.float32)
        return self.module(x).softmax(-1).numpy()
