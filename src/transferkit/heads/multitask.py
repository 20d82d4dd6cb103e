"""Multi-task heads: one shared backbone, one head per task, and the loss that trains them together.

Hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 28, 1997): every task reads the same
backbone features and has an output layer of its own; the head's logits are the tasks' logits side by side.

The loss is a weighted sum of the tasks' cross-entropies ``L_t``, each averaged over the items of the batch that are
labelled for task ``t``. An item with no label for a task (an empty cell, :data:`~transferkit.data.MISSING`) adds
nothing to that task's loss and its gradient, and a task with no labelled item in a batch adds exactly 0.

Weightings:

- ``equal``: ``L = sum_t L_t``.
- ``uncertainty``: Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
  Geometry and Semantics", CVPR 2018. Each task has a learned homoscedastic noise ``sigma_t``; for a softmax
  classifier whose logits are scaled by ``1 / sigma_t^2`` the negative log-likelihood is approximately
  ``L_t / sigma_t^2 + log sigma_t`` (their eq. 10). With ``s_t = log sigma_t^2`` learned instead (unconstrained and
  stable, as the paper recommends)::

      L = sum_t exp(-s_t) * L_t + s_t / 2

  Every ``s_t`` starts at 0 (weight 1: the equal sum) and trains with the head, at its learning rate and without
  weight decay. For a fixed ``L_t`` the optimum is ``exp(-s_t) = 1 / (2 L_t)``: a task whose loss stays high (noisy
  or hard) is weighed down, and the ``s_t / 2`` term keeps the weights from collapsing to 0. The learned
  ``s_t`` are kept in the head (``log_vars``) and so in the bundle.

With a frozen backbone (feature extraction) the tasks share no trained weight, so any weighting gives the same
heads: each task's head is fitted on its own there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .modules import build_head_module

TASK_WEIGHTINGS = ("equal", "uncertainty")
MISSING = -1  # transferkit.data.MISSING: heads/ sits beside data/, not above it


class MultiTaskHead(nn.Module):
    """``heads[t]`` per task on the same features; ``forward`` returns their logits concatenated ``(B, sum K_t)``.

    Args:
        heads: one module per task, features ``(B, D)`` → logits ``(B, K_t)``.
        sizes: ``K_t``, the width of each task's logits.
        weighting: ``uncertainty`` adds the learned log-variances ``log_vars`` ``(T,)`` (see the module docstring).
    """

    log_vars: nn.Parameter | None

    def __init__(self, heads: Sequence[nn.Module], sizes: Sequence[int], weighting: str | None = None):
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.sizes = [int(k) for k in sizes]
        self.weighting = weighting
        if weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(self.heads)))
        else:
            self.register_parameter("log_vars", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x) for head in self.heads], dim=-1)

    def split(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tasks' logits ``(B, K_t)`` from the concatenated ``(B, sum K_t)``."""
        return torch.split(logits, self.sizes, dim=-1)

    def task_weights(self) -> list[dict[str, float]] | None:
        """Per task, the learned ``log_variance`` ``s_t`` and the ``weight`` ``exp(-s_t)`` (None for ``equal``)."""
        if self.log_vars is None:
            return None
        return [{"log_variance": float(s), "weight": float(torch.exp(-s))} for s in self.log_vars.detach().cpu()]


def multitask_config(configs: Sequence[dict[str, Any]], weighting: str | None) -> dict[str, Any]:
    """The config :func:`~transferkit.heads.build_head_module` rebuilds a :class:`MultiTaskHead` from."""
    return {"type": "multitask", "in_features": int(configs[0]["in_features"]),
            "out_features": sum(int(c["out_features"]) for c in configs), "heads": [dict(c) for c in configs],
            "weighting": weighting}


def build_multitask_head(config: dict[str, Any]) -> MultiTaskHead:
    heads = [build_head_module(c) for c in config["heads"]]
    return MultiTaskHead(heads, [int(c["out_features"]) for c in config["heads"]], config.get("weighting"))


class MultiTaskLoss(nn.Module):
    """The multi-task loss of the module docstring, for labels ``(B, T)`` with :data:`MISSING` where unlabelled.

    Args:
        head: the :class:`MultiTaskHead` being trained (its ``sizes``, and its ``log_vars`` for ``uncertainty``).
        class_weights: per task, cross-entropy class weights ``(K_t,)`` or None.
        label_smoothing: as ``torch.nn.CrossEntropyLoss``.

    Besides the loss it tells the training loop what to report: :meth:`correct` and :meth:`validation_sums`.
    """

    def __init__(self, head: MultiTaskHead, class_weights: Sequence[torch.Tensor | None] | None = None,
                 label_smoothing: float = 0.0):
        super().__init__()
        self._head = [head]  # in a list: the head's parameters belong to the model, not to the loss
        self.class_weights = list(class_weights) if class_weights is not None else [None] * len(head.sizes)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        head = self._head[0]
        total = logits.new_zeros(())
        for t, z in enumerate(head.split(logits)):
            y = labels[:, t]
            labelled = y != MISSING
            log_var = head.log_vars[t] if head.log_vars is not None else None
            if not bool(labelled.any()):  # adds 0, yet every parameter gets a (zero) gradient, as DDP expects
                total = total + 0.0 * z.sum() + (0.0 * log_var if log_var is not None else 0.0)
                continue
            weight = self.class_weights[t]
            loss = nn.functional.cross_entropy(z[labelled], y[labelled],
                                               weight=weight.to(z.device) if weight is not None else None,
                                               label_smoothing=self.label_smoothing)
            total = total + (torch.exp(-log_var) * loss + 0.5 * log_var if log_var is not None else loss)
        return total

    @torch.no_grad()
    def _pairs(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int, int]:
        """``(cross-entropy sum, correct, count)`` over the labelled (item, task) pairs, unweighted."""
        loss_sum, correct, count = 0.0, 0, 0
        for t, z in enumerate(self._head[0].split(logits)):
            y = labels[:, t]
            labelled = y != MISSING
            if bool(labelled.any()):
                z, y = z[labelled].float(), y[labelled]
                loss_sum += float(nn.functional.cross_entropy(z, y, reduction="sum"))
                correct += int((z.argmax(1) == y).sum())
                count += int(labelled.sum())
        return loss_sum, correct, count

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        """The batch's share of correct labelled (item, task) pairs, times its size (the loop divides by items)."""
        _, correct, count = self._pairs(logits, labels)
        return correct / count * len(labels) if count else 0.0

    def validation_sums(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, int]:
        """``(loss sum, correct, count)`` over labelled pairs: validation loss and accuracy are per pair, with the
        tasks' losses unweighted (comparable between weightings)."""
        return self._pairs(logits, labels)
