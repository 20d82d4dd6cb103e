"""AdaBN: re-estimate every BatchNorm layer's statistics on the target domain, no training at all.

Li, Wang, Shi, Liu & Hou, "Revisiting Batch Normalization For Practical Domain Adaptation" (ICLR workshop 2017):
the weights of a network hold the task, its BatchNorm statistics hold the domain. Replacing the source's running means
and variances with the target's (one pass over unlabelled target data, exact averages rather than a moving one)
adapts the network to a target whose low-level statistics moved (contrast, colour, sensor), and costs one forward
pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of every BatchNorm layer of ``model`` with their exact averages over
    ``batches`` (target inputs, as ``model`` takes them). Returns how many layers were re-estimated.

    Only the statistics change: weights, biases and the model's train/eval mode are as before.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return 0
    was_training = model.training
    saved = [(m.momentum, m.training) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts the same
    model.eval()
    for m in layers:
        m.train()  # only the BatchNorm layers update statistics; dropout and the rest stay in eval
    for batch in batches:
        model(batch)
    for m, (momentum, training) in zip(layers, saved, strict=True):
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
    return len(layers)
