"""MCC: minimum class confusion on the unlabelled target's predictions.

Jin, Wang, Long & Wang, "Minimum Class Confusion for Versatile Domain Adaptation" (ECCV 2020). With no domain
classifier at all: in each target batch, the predictions (softmax at temperature ``T`` = 2.5) give a class
correlation matrix ``C = Pᵀ W P`` whose off-diagonal mass is how often the model confuses two classes on the same
items. The items are weighted by certainty (``1 + exp(-entropy)``, normalised to the batch size), the rows of ``C``
normalised to sum to one, and the loss is the off-diagonal sum over the number of classes. One of the strongest
simple methods in the Transfer-Learning-Library's public benchmarks (Office-31, Office-Home, VisDA), and it needs no
extra network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

TEMPERATURE = 2.5


def mcc_loss(target_logits: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """The class confusion of one target batch of logits ``(B, classes)``."""
    batch, classes = target_logits.shape
    proba = torch.softmax(target_logits / temperature, dim=1)
    entropy = -(proba * torch.log(proba + 1e-5)).sum(1)
    weight = 1 + torch.exp(-entropy)
    weight = (batch * weight / weight.sum()).unsqueeze(1)
    confusion = (proba * weight).T @ proba
    confusion = confusion / confusion.sum(1, keepdim=True)
    return (confusion.sum() - confusion.trace()) / classes


class MCCLoss(nn.Module):
    """``forward(..., target_logits=...)``: :func:`mcc_loss` (no parameters of its own)."""

    def __init__(self, temperature: float = TEMPERATURE):
        super().__init__()
        self.temperature = temperature

    def forward(self, source: torch.Tensor, target: torch.Tensor, progress: float, *,
                target_logits: torch.Tensor, **_: Any) -> torch.Tensor:
        return mcc_loss(target_logits, self.temperature)
