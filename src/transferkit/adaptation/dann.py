"""DANN: domain-adversarial training through a gradient reversal layer.

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand & Lempitsky, "Domain-Adversarial Training of
Neural Networks" (JMLR 2016). A domain classifier learns to tell source features from target features; between it and
the feature extractor sits a layer that is the identity forwards and multiplies the gradient by ``-λ`` backwards, so the
extractor learns features the domain classifier cannot separate while the label classifier still reads them. ``λ``
ramps from 0 to 1 as ``2 / (1 + exp(-10 p)) - 1`` over training progress ``p`` (the paper's schedule), so the early,
noisy domain signal does not wreck the features before the classes are learnt.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forwards; the gradient times ``-scale`` backwards."""
    return _ReverseGradient.apply(x, scale)


def dann_ramp(progress: float) -> float:
    """The adversarial weight at training progress ``progress`` in [0, 1]: ``2 / (1 + exp(-10 p)) - 1``."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class DomainDiscriminator(nn.Module):
    """Features ``(B, d)`` → one source-vs-target logit ``(B,)``: two hidden layers of ``hidden`` units."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(True), nn.Dropout(0.5),
                                 nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


class DANNLoss(nn.Module):
    """The domain loss of one step: binary cross-entropy of the discriminator on reversed source and target features.

    ``forward(source_features, target_features, progress)``; the discriminator's parameters train with the rest.
    """

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.discriminator = DomainDiscriminator(dim, hidden)

    def forward(self, source: torch.Tensor, target: torch.Tensor, progress: float, **_: Any) -> torch.Tensor:
        features = reverse_gradient(torch.cat([source, target]), dann_ramp(progress))
        domain = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(features.device)
        return nn.functional.binary_cross_entropy_with_logits(self.discriminator(features), domain)
