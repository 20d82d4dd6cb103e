"""Learning-rate schedules with warmup, and a learning-rate finder that leaves the model untouched.

Schedules are multipliers of each parameter group's own learning rate (so discriminative rates keep their
ratios): ``cosine`` (linear warmup, then half-cosine to zero; Loshchilov & Hutter, ICLR 2017), ``one-cycle``
(Smith & Topin, 2017: warmup to the peak then cosine annealing, via ``torch.optim.lr_scheduler.OneCycleLR``)
and ``constant`` (warmup then flat).

The finder is Smith's LR range test ("Cyclical Learning Rates", WACV 2017). Unlike fastai's ``lr_find``, which
has been reported to leave the model changed, it snapshots weights, BatchNorm buffers, requires_grad flags and
RNG state and restores them all.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import TransferkitError

SCHEDULERS = ("cosine", "one-cycle", "constant")


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_fraction: float = 0.05
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step scheduler over ``total_steps`` for every parameter group of ``optimizer``."""
    total_steps = max(1, total_steps)
    if name == "one-cycle":
        pct = max(warmup_fraction, 0.05)
        if pct * total_steps <= 1:  # OneCycleLR divides by pct * total - 1: give the warmup two steps
            pct = 2 / total_steps
        if pct < 1 - 1 / total_steps:
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps,
                pct_start=pct, anneal_strategy="cos", cycle_momentum=False,
            )
        name = "cosine"  # too few steps for its two phases: the same shape, warmup then cosine
    if name not in SCHEDULERS:
        raise TransferkitError(f"scheduler must be one of {', '.join(SCHEDULERS)}. Got {name!r} instead.")
    warmup = int(round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if name == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def lr_find(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    num_steps: int = 60,
    make_optimizer: Callable[[list[nn.Parameter], float], torch.optim.Optimizer] | None = None,
) -> dict[str, Any]:
    """Exponentially increase the learning rate over ``num_steps`` batches and record the loss.

    The model (weights, buffers, train/eval modes, requires_grad) and torch's RNG are restored afterwards.

    Returns:
        ``{"lrs": [...], "losses": [...], "suggested_lr": float}``; the suggestion is the learning rate of the
        steepest descent of the smoothed loss curve.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TransferkitError("lr_find needs trainable parameters; unfreeze something first.")
    state = copy.deepcopy(model.state_dict())
    modes = {name: m.training for name, m in model.named_modules()}
    flags = [p.requires_grad for p in model.parameters()]
    rng = torch.get_rng_state()
    optimizer = (make_optimizer or (lambda ps, lr: torch.optim.AdamW(ps, lr=lr)))(params, start_lr)
    gamma = (end_lr / start_lr) ** (1.0 / max(1, num_steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed, best = 0.0, math.inf
    try:
        model.train()
        step = 0
        while step < num_steps:
            progressed = False
            for x, y in batches:
                lr = start_lr * gamma**step
                for g in optimizer.param_groups:
                    g["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                value = float(loss.detach())
                smoothed = value if step == 0 else 0.9 * smoothed + 0.1 * value
                debiased = smoothed / (1 - 0.9 ** (step + 1))
                lrs.append(lr)
                losses.append(debiased)
                best = min(best, debiased)
                step += 1
                progressed = True
                if step >= num_steps or not math.isfinite(debiased) or debiased > 4 * best:
                    step = num_steps
                    break
            if not progressed:
                raise TransferkitError("lr_find got no batches; give it labeled training data.")
    finally:
        model.load_state_dict(state)
        for name, m in model.named_modules():
            m.train(modes[name]) if name in modes else None
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        torch.set_rng_state(rng)
    return {"lrs": lrs, "losses": losses, "suggested_lr": suggest_lr(lrs, losses)}


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The learning rate where the loss falls fastest (steepest negative slope in log-lr)."""
    if len(lrs) < 4:
        return lrs[0] if lrs else 1e-3
    cut = int(np.argmin(losses)) + 1  # ignore the divergent tail
    x, y = np.log10(lrs[:cut]), np.asarray(losses[:cut])
    if len(x) < 3:
        return float(lrs[max(0, cut - 1)] / 10)
    slopes = np.gradient(y, x)
    return float(10 ** x[int(np.argmin(slopes))])
