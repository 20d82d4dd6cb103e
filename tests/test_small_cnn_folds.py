"""The verdict's small CNNs trained cheaper: the same updates and models as the plain path, checked on tiny cases."""

from __future__ import annotations

import copy

import torch
from torch import nn

from transferkit.strategies.small_cnn import SmallCNN, adamw_steps, one_cycle


def test_adamw_steps_are_torch_adamw_with_the_one_cycle_schedule():
    torch.manual_seed(0)
    ours = SmallCNN(1, 3, (12, 12), 4, dropout=0.0)  # no dropout: both copies see the same function
    reference = copy.deepcopy(ours)
    start = copy.deepcopy(ours)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(6))
    params = list(ours.parameters())
    step = adamw_steps(params, 3e-3, 5e-4, one_cycle(6))
    x = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1])
    for _ in range(6):  # through warm-up and into the cosine: every step's learning rate matters
        for model in (ours, reference):
            nn.functional.cross_entropy(model(x), y).backward()
        step()
        optimizer.step()
        schedule.step()
        for p in params:
            p.grad = None
        optimizer.zero_grad()
    theirs = reference.state_dict()
    assert not torch.equal(ours.head[-1].weight, start.head[-1].weight)  # it trained
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs[name]), name
